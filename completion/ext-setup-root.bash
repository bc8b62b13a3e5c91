# bash completion for ext-setup-root(8): the commands, the verbs of the
# confext and sysext commands (systemd-confext's), every option and the
# values of the options that take a fixed set. Installed by `make install`
# as $(PREFIX)/share/bash-completion/completions/ext-setup-root; the tests in
# cmd/ext-setup-root keep the option lists equal to each command's --help.

_ext_setup_root() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev= opt= i cmd= keep=
    local commands='boot confext fetch links plan sysext varlink version'
    local -A opts=(
        [boot]='--debug --dry-run --essential= --essential-sysext= --root= --stage= --help'
        [links]='--config= --dry-run --root= --help'
        [plan]='--config= --json --os-version= --root= --usr= --help'
        [fetch]='--config= --os-version= --root= --usr= --help'
        [varlink]='--idle-timeout= --root= --help'
        [version]='--help'
        [ext]='--help -h --version --root= --mutable= --image-policy= --noexec= --force --no-reload
               --always-refresh= --no-pager --no-legend --json= --essential= --no-beneath'
    )
    local verbs='status merge unmerge refresh list'

    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            -*|=) ;;
            *) cmd=${COMP_WORDS[i]}; break ;;
        esac
    done

    # The option a value is completed for: "--opt=val" is one word, or three
    # when COMP_WORDBREAKS holds "=" (bash's default): "--opt" "=" "val";
    # "--opt val" is two.
    if [[ $cur == -*=* ]]; then
        # One word (COMP_WORDBREAKS without "="): the reply replaces it whole.
        opt=${cur%%=*}; keep=$opt=; cur=${cur#*=}
    elif [[ $cur == = ]]; then
        opt=${COMP_WORDS[COMP_CWORD-1]}; cur=
    elif ((COMP_CWORD >= 2)) && [[ ${COMP_WORDS[COMP_CWORD-1]} == = ]]; then
        opt=${COMP_WORDS[COMP_CWORD-2]}
    elif ((COMP_CWORD >= 1)); then
        # Only options taking a value; plan's --json is a switch.
        prev=${COMP_WORDS[COMP_CWORD-1]}
        [[ " ${opts[${cmd:-none}]-} " == *" --${prev#${prev%%[!-]*}}= "* ]] ||
            [[ $cmd == @(confext|sysext) && " ${opts[ext]} " == *" --${prev#${prev%%[!-]*}}= "* ]] && opt=$prev
    fi
    # Go's flags take -opt as well as --opt: one form for the case below.
    [[ -n $opt ]] && opt=-${opt#${opt%%[!-]*}}
    if [[ -n $opt ]]; then
        case $opt in
            -root) COMPREPLY=($(compgen -d -- "$cur")) ;;
            -config) COMPREPLY=($(compgen -f -- "$cur")) ;;
            -stage) COMPREPLY=($(compgen -W 'pre post late-confext late-sysext' -- "$cur")) ;;
            -mutable) COMPREPLY=($(compgen -W 'yes no auto import ephemeral ephemeral-import help' -- "$cur")) ;;
            -json) COMPREPLY=($(compgen -W 'pretty short off' -- "$cur")) ;;
            -noexec|-always-refresh) COMPREPLY=($(compgen -W 'yes no' -- "$cur")) ;;
            *) COMPREPLY=() ;;
        esac
        [[ -n $keep ]] && COMPREPLY=("${COMPREPLY[@]/#/$keep}")
        return 0
    fi

    case $cmd in
        '')
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W '--help' -- "$cur"))
            else
                COMPREPLY=($(compgen -W "$commands" -- "$cur"))
            fi ;;
        confext|sysext)
            local have_verb= w
            for w in "${COMP_WORDS[@]:i+1:COMP_CWORD-i-1}"; do
                [[ " $verbs " == *" $w "* ]] && have_verb=1
            done
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "${opts[ext]}" -- "$cur"))
            elif [[ -z $have_verb ]]; then
                COMPREPLY=($(compgen -W "$verbs" -- "$cur"))
            fi ;;
        boot|fetch|links|plan|varlink|version)
            COMPREPLY=($(compgen -W "${opts[$cmd]}" -- "$cur")) ;;
    esac
    # No space after an option that takes a value ("--root=").
    if [[ ${#COMPREPLY[@]} == 1 && ${COMPREPLY[0]} == *= ]] && type compopt &>/dev/null; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}

complete -F _ext_setup_root ext-setup-root
