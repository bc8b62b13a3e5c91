package varlink

// The interface descriptions served by GetInterfaceDescription. They
// define the same methods, types and errors as systemd 262's
// systemd-sysext (checked by TestIDLMatchesSystemd262 against `varlinkctl
// introspect` of the real binary); the comments are ours.

// SysextIDL is io.systemd.sysext.
const SysextIDL = `interface io.systemd.sysext

type ImageClass(
	sysext,
	confext
)

type ImageType(
	directory,
	subvolume,
	raw,
	block,
	mstack
)

# Merge the class's images into its hierarchies; fails with AlreadyMerged if a merge is in place.
method Merge(
	class: ?ImageClass,
	force: ?bool,
	noReload: ?bool,
	noexec: ?bool,
	# Accepted; this service asks no one: only root may change merges.
	allowInteractiveAuthentication: ?bool
) -> ()

# Remove the class's merge.
method Unmerge(
	class: ?ImageClass,
	noReload: ?bool,
	# Accepted; this service asks no one: only root may change merges.
	allowInteractiveAuthentication: ?bool
) -> ()

# Skip when nothing changed, else replace the merge atomically (new merge mounted beneath the old one).
method Refresh(
	class: ?ImageClass,
	force: ?bool,
	noReload: ?bool,
	alwaysRefresh: ?bool,
	noexec: ?bool,
	# Accepted; this service asks no one: only root may change merges.
	allowInteractiveAuthentication: ?bool
) -> ()

# [Requires 'more' flag]
method List(
	class: ?ImageClass,
	# Accepted; listing is allowed to everyone.
	allowInteractiveAuthentication: ?bool
) -> (
	Class: ImageClass,
	Type: ImageType,
	Name: string,
	Path: ?string,
	ReadOnly: bool,
	CreationTimestamp: ?int,
	ModificationTimestamp: ?int,
	Usage: ?int,
	UsageExclusive: ?int,
	Limit: ?int,
	LimitExclusive: ?int
)

error NoImagesFound()

error AlreadyMerged(
	hierarchy: string
)
`

// NotifyIDL is io.systemd.SysUpdate.Notify, systemd-sysupdate's callout.
const NotifyIDL = `interface io.systemd.SysUpdate.Notify

type Resource(
	transfer: string,
	path: ?string
)

# Called by systemd-sysupdate after an update: refreshes sysexts, then confexts.
method OnCompletedUpdate(
	component: ?string,
	version: ?string,
	resources: ?[]Resource
) -> ()
`

// SystemdIDL is io.systemd, whose System error reports a failed method.
const SystemdIDL = `interface io.systemd

error Disconnected()

error TimedOut()

error Protocol()

# A Linux error number: origin "linux", its name and number.
error System(
	origin: ?string,
	errnoName: ?string,
	errno: ?int
)
`

// serviceIDL is org.varlink.service, every Varlink service's own.
const serviceIDL = `interface org.varlink.service

method GetInfo() -> (
	vendor: string,
	product: string,
	version: string,
	url: string,
	interfaces: []string
)

method GetInterfaceDescription(
	interface: string
) -> (
	description: string
)

error InterfaceNotFound(
	interface: string
)

error MethodNotFound(
	method: string
)

error MethodNotImplemented(
	method: string
)

error InvalidParameter(
	parameter: string
)

error PermissionDenied()

error ExpectedMore()
`

// Interfaces are the IDL texts this service serves besides
// org.varlink.service.
func Interfaces() map[string]string {
	return map[string]string{
		"io.systemd":                  SystemdIDL,
		"io.systemd.sysext":           SysextIDL,
		"io.systemd.SysUpdate.Notify": NotifyIDL,
	}
}
