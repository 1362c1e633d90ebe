package app

import (
	"fmt"
	"os"
	"runtime"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/config"
)

// secretFile is a file of the config that holds a secret, and the key that names it.
type secretFile struct{ key, path string }

// secretFiles are the files of cfg that hold secrets: the admin token and the TLS private keys
// (listeners' and upstreams').
func secretFiles(cfg *config.Config) []secretFile {
	var files []secretFile
	if cfg.Admin.TokenFile != "" {
		files = append(files, secretFile{"admin.token_file", cfg.Admin.TokenFile})
	}
	for i, l := range cfg.Listeners {
		if l.TLS != nil && l.TLS.KeyFile != "" {
			files = append(files, secretFile{fmt.Sprintf("listeners[%d].tls.key_file", i), l.TLS.KeyFile})
		}
		if l.UpstreamTLS != nil && l.UpstreamTLS.KeyFile != "" {
			files = append(files, secretFile{fmt.Sprintf("listeners[%d].upstream_tls.key_file", i), l.UpstreamTLS.KeyFile})
		}
	}
	return files
}

// warnReadableSecrets logs a warning for each secret file of cfg that every user of the host may read
// (mode o+r; Kubernetes projects Secrets 0644 unless told otherwise), naming its key, path and mode. It
// refuses nothing: a readable key still works, and the files are the deployment's to fix. Windows has no
// such mode bits.
func warnReadableSecrets(log zerolog.Logger, cfg *config.Config) {
	if runtime.GOOS == "windows" {
		return
	}
	for _, f := range secretFiles(cfg) {
		fi, err := os.Stat(f.path) // follows the ..data symlinks of a projected volume
		if err != nil || fi.Mode().Perm()&0o004 == 0 {
			continue
		}
		log.Warn().Str("key", f.key).Str("file", f.path).Str("mode", fmt.Sprintf("%#o", fi.Mode().Perm())).
			Msg("secret file is readable by every user on this host: chmod o-r it (in Kubernetes, set the volume's defaultMode, e.g. 0440 with the pod's fsGroup)")
	}
}
