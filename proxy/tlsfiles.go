package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// ServerTLSFiles name the files a TLS listener serves and verifies with.
type ServerTLSFiles struct {
	// CertFile and KeyFile are the PEM certificate chain and key. Required.
	CertFile, KeyFile string
	// ClientCAFile is a PEM bundle of CAs for client certificates; required
	// unless ClientAuth is tls.NoClientCert.
	ClientCAFile string
	// ClientAuth is tls.NoClientCert, tls.VerifyClientCertIfGiven or
	// tls.RequireAndVerifyClientCert; the modes that skip verification are
	// refused, so no unverified subject ever reaches a log line.
	ClientAuth tls.ClientAuthType
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13; 0 means 1.2.
	MinVersion uint16
}

// UpstreamTLSFiles name the files kafkaguard dials a TLS broker with.
type UpstreamTLSFiles struct {
	// CAFile is a PEM bundle of CAs for the broker's certificate; "" means
	// the system's roots.
	CAFile string
	// ServerName is checked against the broker's certificate. Required: the
	// caller passes the upstream's host when the config leaves it empty.
	ServerName string
	// CertFile and KeyFile, both or neither, are a client certificate.
	CertFile, KeyFile string
}

// TLSFileOptions are what both kinds of source share.
type TLSFileOptions struct {
	// Listener labels the expiry gauge and the log lines: the listener's
	// configured address, so the label set stays as small as the config.
	Listener string
	// CheckEvery is how often, at most, the files are stat'ed for a change
	// (default 5s); see TLSFiles for when.
	CheckEvery time.Duration
	Logger     zerolog.Logger
	// Metrics, when set, exports each certificate's expiry.
	Metrics *TLSMetrics
}

// Roles of a certificate file, the role label of the expiry gauge.
const (
	roleServer         = "server"
	roleClientCA       = "client_ca"
	roleUpstreamCA     = "upstream_ca"
	roleUpstreamClient = "upstream_client"
)

// ErrTLSFiles marks certificate or key files that cannot be read or parsed,
// or a key that does not match its certificate.
var ErrTLSFiles = errors.New("tls files unusable")

// TLSFiles is a *tls.Config kept in step with the files it was built from,
// for one listener (NewServerTLS) or one upstream (NewUpstreamTLS).
//
// Kubernetes rotates a mounted Secret by writing the new files into a fresh
// directory and swapping the "..data" symlink, so the paths never change but
// what they resolve to does. Each file is stat'ed through its symlinks and
// its (mtime, size, inode, device) compared with the last good load; a
// difference re-reads every file of the set. The check runs, at most once
// per CheckEvery, on the paths that need the files anyway: a client's
// handshake (GetConfigForClient), a dial to the broker (Config), and a
// Prometheus scrape of the expiry gauge. A watcher goroutine would need an
// owner and a Stop and would wake when nobody needs the files; a lazy check
// costs one stat per file per CheckEvery under load and nothing when idle,
// and a scrape keeps the gauge current on a quiet listener. The stat is done
// by whichever caller finds the check due first; the others go on with the
// config they have, so no handshake ever waits for another's disk read.
//
// A set of files that fails to load (half-written, a key that does not match
// the new certificate yet, a file gone mid-swap) keeps the last good config
// and is logged, rate-limited, with the path; the next check tries again.
// Connections already established are never touched: their *tls.Conn holds
// what it negotiated.
type TLSFiles struct {
	opts  TLSFileOptions
	kind  string // kindServer or kindUpstream: with the listener, its key in TLSMetrics
	files any    // the ServerTLSFiles or UpstreamTLSFiles it was built from
	build func() (*tlsLoad, error)
	paths []string // every file build reads, in a fixed order
	log   *logLimiter

	// cur is the last good load; replaced whole, read without a lock.
	cur atomic.Pointer[tlsLoad]
	// nextCheck is when the files are next stat'ed, in UnixNano.
	nextCheck atomic.Int64
	// checking is held by the one caller doing a check; others skip it.
	checking sync.Mutex
	// stamps is owned by the holder of checking: the files' identity at the
	// last good load.
	stamps []fileStamp
}

// tlsLoad is one good load of the files.
type tlsLoad struct {
	cfg    *tls.Config
	expiry map[string]time.Time // by role
}

// fileStamp identifies a file's content without reading it.
type fileStamp struct {
	mtime int64
	size  int64
	ino   uint64
	dev   uint64
}

// NewServerTLS loads a listener's files and returns the source of its
// *tls.Config. Errors match ErrTLSFiles and name the file.
func NewServerTLS(f ServerTLSFiles, o TLSFileOptions) (*TLSFiles, error) {
	switch f.ClientAuth {
	case tls.NoClientCert, tls.VerifyClientCertIfGiven, tls.RequireAndVerifyClientCert:
	default:
		return nil, fmt.Errorf("proxy: tls client auth %v: only modes that verify are allowed", f.ClientAuth)
	}
	if f.ClientAuth != tls.NoClientCert && f.ClientCAFile == "" {
		return nil, errors.New("proxy: tls client auth needs a client CA file")
	}
	min := f.MinVersion
	if min == 0 {
		min = tls.VersionTLS12
	}
	if min != tls.VersionTLS12 && min != tls.VersionTLS13 {
		return nil, fmt.Errorf("proxy: tls min version %#x: only 1.2 and 1.3", min)
	}
	paths := []string{f.CertFile, f.KeyFile}
	if f.ClientCAFile != "" {
		paths = append(paths, f.ClientCAFile)
	}
	build := func() (*tlsLoad, error) {
		pair, leaf, err := loadKeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, err
		}
		ld := &tlsLoad{expiry: map[string]time.Time{roleServer: leaf.NotAfter}}
		cfg := &tls.Config{
			Certificates: []tls.Certificate{pair},
			MinVersion:   min,
			ClientAuth:   f.ClientAuth,
		}
		if f.ClientCAFile != "" {
			pool, exp, err := loadCAs(f.ClientCAFile)
			if err != nil {
				return nil, err
			}
			cfg.ClientCAs = pool
			ld.expiry[roleClientCA] = exp
		}
		ld.cfg = cfg
		return ld, nil
	}
	return newTLSFiles(o, kindServer, f, paths, build)
}

// NewUpstreamTLS loads the files for dialling one broker over TLS.
func NewUpstreamTLS(f UpstreamTLSFiles, o TLSFileOptions) (*TLSFiles, error) {
	if f.ServerName == "" {
		return nil, errors.New("proxy: upstream tls needs a server name")
	}
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, errors.New("proxy: upstream tls client certificate needs both a cert and a key file")
	}
	var paths []string
	if f.CAFile != "" {
		paths = append(paths, f.CAFile)
	}
	if f.CertFile != "" {
		paths = append(paths, f.CertFile, f.KeyFile)
	}
	build := func() (*tlsLoad, error) {
		ld := &tlsLoad{expiry: map[string]time.Time{}}
		cfg := &tls.Config{
			ServerName:    f.ServerName,
			MinVersion:    tls.VersionTLS12,
			Renegotiation: tls.RenegotiateNever,
		}
		if f.CAFile != "" {
			pool, exp, err := loadCAs(f.CAFile)
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = pool
			ld.expiry[roleUpstreamCA] = exp
		}
		if f.CertFile != "" {
			pair, leaf, err := loadKeyPair(f.CertFile, f.KeyFile)
			if err != nil {
				return nil, err
			}
			cfg.Certificates = []tls.Certificate{pair}
			ld.expiry[roleUpstreamClient] = leaf.NotAfter
		}
		ld.cfg = cfg
		return ld, nil
	}
	return newTLSFiles(o, kindUpstream, f, paths, build)
}

// Kinds of TLSFiles.
const (
	kindServer   = "server"
	kindUpstream = "upstream"
)

func newTLSFiles(o TLSFileOptions, kind string, files any, paths []string, build func() (*tlsLoad, error)) (*TLSFiles, error) {
	if o.CheckEvery <= 0 {
		o.CheckEvery = 5 * time.Second
	}
	t := &TLSFiles{opts: o, kind: kind, files: files, build: build, paths: paths, log: newLogLimiter(0.1, 3)}
	stamps, err := t.stat()
	if err != nil {
		return nil, err
	}
	ld, err := build()
	if err != nil {
		return nil, err
	}
	t.stamps = stamps
	t.cur.Store(ld)
	t.nextCheck.Store(time.Now().Add(o.CheckEvery).UnixNano())
	o.Metrics.add(t)
	return t, nil
}

// Files returns what t was built from: a ServerTLSFiles or an
// UpstreamTLSFiles, as given.
func (t *TLSFiles) Files() any { return t.files }

// ServerConfig returns the config for tls.Server or tls.NewListener: every
// handshake gets the current files' config through GetConfigForClient.
func (t *TLSFiles) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return t.Config(), nil
		},
	}
}

// Config returns the config of the current files, checking them first if
// the check is due. For an upstream, pass it to tls.Client for each dial.
// The result is shared: never modify it.
func (t *TLSFiles) Config() *tls.Config {
	t.maybeReload(time.Now())
	return t.cur.Load().cfg
}

// maybeReload stats the files if a check is due and no other caller is
// doing it, and reloads them if any changed.
func (t *TLSFiles) maybeReload(now time.Time) {
	if now.UnixNano() < t.nextCheck.Load() || !t.checking.TryLock() {
		return
	}
	defer t.checking.Unlock()
	t.nextCheck.Store(now.Add(t.opts.CheckEvery).UnixNano())
	stamps, err := t.stat()
	if err == nil && stampsEqual(stamps, t.stamps) {
		return
	}
	var ld *tlsLoad
	if err == nil {
		ld, err = t.build()
	}
	if err != nil {
		if ok, suppressed := t.log.allow(); ok {
			t.opts.Logger.Warn().Err(err).Str("listener", t.opts.Listener).Int("suppressed", suppressed).
				Msg("tls files changed but do not load; keeping the certificates loaded before")
		}
		return
	}
	t.stamps = stamps
	t.cur.Store(ld)
	ev := t.opts.Logger.Info().Str("listener", t.opts.Listener)
	for role, exp := range ld.expiry {
		ev = ev.Time(role+"_not_after", exp)
	}
	ev.Strs("files", t.paths).Msg("tls files reloaded")
}

// stat stamps every file, following symlinks.
func (t *TLSFiles) stat() ([]fileStamp, error) {
	out := make([]fileStamp, len(t.paths))
	for i, p := range t.paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTLSFiles, err)
		}
		out[i] = stampOf(fi)
	}
	return out, nil
}

func stampsEqual(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// loadKeyPair reads a certificate chain and its key. Errors name the files
// and describe the PEM's shape, never its bytes.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, *x509.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%w: %w", ErrTLSFiles, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%w: %w", ErrTLSFiles, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%w: %s with %s: %w", ErrTLSFiles, certFile, keyFile, err)
	}
	return pair, pair.Leaf, nil
}

// loadCAs reads a CA bundle and returns it with the expiry the gauge shows:
// the earliest end among its certificates still valid (the first that will
// break something), or, if all have ended, the latest.
func loadCAs(file string) (*x509.CertPool, time.Time, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %w", ErrTLSFiles, err)
	}
	pool := x509.NewCertPool()
	now := time.Now()
	var soonest, latest time.Time
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("%w: %s: certificate %d: %w", ErrTLSFiles, file, n+1, err)
		}
		pool.AddCert(c)
		n++
		if c.NotAfter.After(latest) {
			latest = c.NotAfter
		}
		if c.NotAfter.After(now) && (soonest.IsZero() || c.NotAfter.Before(soonest)) {
			soonest = c.NotAfter
		}
	}
	if n == 0 {
		return nil, time.Time{}, fmt.Errorf("%w: %s: no PEM certificate in it", ErrTLSFiles, file)
	}
	if soonest.IsZero() {
		soonest = latest
	}
	return pool, soonest, nil
}
