package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// maxCABundle bounds the CA bundle read (a full Mozilla bundle is ~220 KiB).
const maxCABundle = 8 << 20

// newClient builds the HTTP client: trust from the CA bundle, no proxy
// from the environment, no transparent decompression (a ".gz" payload is
// not gzip), a timeout on every wait, redirects only to https (or http
// with AllowHTTP).
func newClient(c *Config, t Timing) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CABundle != "" {
		pool, err := readCABundle(c.CABundle)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: t.Request, KeepAlive: 20 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   t.Request,
		ResponseHeaderTimeout: t.Request,
		DisableCompression:    true,
		MaxIdleConns:          2,
		IdleConnTimeout:       t.Request,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("more than 10 redirects")
		}
		_, err := c.checkURL(req.URL.String())
		return err
	}}, nil
}

// readCABundle reads the PEM bundle at host path p.
func readCABundle(p string) (*x509.CertPool, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCABundle+1))
	if err != nil {
		return nil, fmt.Errorf("CA bundle %s: %w", p, err)
	}
	if len(b) > maxCABundle {
		return nil, fmt.Errorf("CA bundle %s: larger than %d bytes", p, maxCABundle)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate", p)
	}
	return pool, nil
}

// permanentError is a failure retrying cannot fix (404, a bad signature).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// errStalled is a transfer that made no progress for RequestTimeout.
var errStalled = errors.New("no data received within the request timeout")

// get runs one GET of u and hands the body to recv; the request is
// cancelled when a body read waits longer than t.Request. maxLen bounds a
// declared Content-Length.
func get(ctx context.Context, hc *http.Client, u string, t Timing, maxLen int64, recv func(io.Reader) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return permanentError{err}
	}
	req.Header.Set("User-Agent", "ext-setup-root")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	default:
		return permanentError{fmt.Errorf("GET %s: %s", u, resp.Status)}
	}
	if resp.ContentLength > maxLen {
		return permanentError{fmt.Errorf("GET %s: Content-Length %d exceeds the largest payload allowed (%d)", u, resp.ContentLength, maxLen)}
	}
	timer := time.AfterFunc(t.Request, func() { cancel(errStalled) })
	defer timer.Stop()
	err = recv(&stallReader{r: resp.Body, timer: timer, d: t.Request})
	if err != nil && context.Cause(ctx) == errStalled {
		return fmt.Errorf("GET %s: %w", u, errStalled)
	}
	return err
}

// stallReader restarts the stall timer after every read that made progress.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.d)
	}
	return n, err
}

// retry runs attempt up to attempts times while it fails transiently and
// ctx lasts, delay apart; the last error is returned.
func retry(ctx context.Context, attempts int, delay time.Duration, logf func(string, ...any), attempt func() error) error {
	var err error
	for i := 1; i <= attempts; i++ {
		err = attempt()
		var pe permanentError
		if err == nil || errors.As(err, &pe) || ctx.Err() != nil {
			break
		}
		if i == attempts {
			break
		}
		logf("attempt %d of %d failed: %v; retrying in %s", i, attempts, err, delay)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (then the deadline passed)", err)
		case <-time.After(delay):
		}
	}
	if ctx.Err() != nil && err != nil {
		return fmt.Errorf("%w (deadline: %v)", err, context.Cause(ctx))
	}
	return err
}
