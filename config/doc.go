// Package config turns kafkaguard's YAML file and environment into a plain
// Config: Load reads them with koanf (the only package that imports it),
// Default supplies every key left unset, and Validate checks the result,
// returning every problem at once (errors.Join of *KeyError values, each
// naming its key, e.g. "limits.api.Metadta: unknown API name (did you mean
// Metadata?)"). Unknown keys, in the file or the environment, are errors,
// never silently ignored. Sizes are written "64KiB", "1MiB", "1MB" or "1024"
// (see Size); durations "10s", "1m30s"; rates "50/s", "600/m", "10/100ms"
// (see Rate); CIDRs "10.0.0.0/8" or a bare IP. The package starts no
// goroutines and keeps no state; deploy/kafkaguard.yaml lists every key with
// its default, and a test keeps it loading and valid.
//
// Environment variables override the file: the prefix KAFKAGUARD_, then the key
// path upper-cased with "__" between levels, so KAFKAGUARD_LIMITS__MAX_REQUEST_BYTES=2MiB
// sets limits.max_request_bytes, KAFKAGUARD_LOG__LEVEL=debug sets log.level and
// KAFKAGUARD_LIMITS__API__METADATA=64KiB sets limits.api.Metadata (API names
// match regardless of case here). Lists of values take commas:
// KAFKAGUARD_LIMITS__DENY_API=CreateTopics,DeleteTopics,
// KAFKAGUARD_ABUSE__ALLOW=10.0.0.0/8,127.0.0.1. Listeners, a list of
// sections, cannot be set from the environment; use the file. A KAFKAGUARD_
// variable that names no key is an error naming the variable.
//
// Usage:
//
//	cfg, err := config.LoadValid(path, os.Environ()) // Load, then Validate
//	if err != nil {
//		return fmt.Errorf("config %s:\n%w", path, err)
//	}
//	produceLimit := cfg.APILimit("Produce")
package config
