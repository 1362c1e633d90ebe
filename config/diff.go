package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Change is one key whose value differs between two configs, with both values formatted for a log line.
type Change struct {
	Key      string
	Old, New string
}

// Diff lists the keys whose values differ between old and new, sorted by key. Sections are walked key by
// key down to plain values; a list, a map or an optional section (listeners, limits.api, abuse.allow,
// listeners[].tls) is one value, compared whole. Values are formatted as they would be written in YAML
// where that is plain (sizes as 1MiB, durations as Go prints them); nothing in a Config is a
// secret (the token and key files are named by path), so every value may be logged.
func Diff(old, new Config) []Change {
	var out []Change
	diffValue(&out, "", reflect.ValueOf(old), reflect.ValueOf(new))
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func diffValue(out *[]Change, key string, a, b reflect.Value) {
	if a.Kind() == reflect.Struct && a.Type().String() != "time.Time" {
		for i := range a.NumField() {
			tag := a.Type().Field(i).Tag.Get("koanf")
			if tag == "" {
				continue
			}
			diffValue(out, joinKey(key, tag), a.Field(i), b.Field(i))
		}
		return
	}
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return
	}
	*out = append(*out, Change{Key: key, Old: formatValue(a), New: formatValue(b)})
}

// formatValue prints a plain value with fmt and anything with structure as compact JSON.
func formatValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Slice, reflect.Map, reflect.Pointer, reflect.Struct:
		if (v.Kind() == reflect.Pointer || v.Kind() == reflect.Slice || v.Kind() == reflect.Map) && v.IsNil() {
			return "(none)"
		}
		b, err := json.Marshal(v.Interface())
		if err != nil {
			return fmt.Sprint(v.Interface())
		}
		return string(b)
	case reflect.String:
		return fmt.Sprintf("%q", v.String())
	}
	return fmt.Sprint(v.Interface())
}

// Merge returns what a running kafkaguard applies when its config file changes from running to next:
// next's value for every key Live names, running's for every other, and the changes kept back (the keys
// that differ but cannot change live, with running's value as Old and the file's as New), sorted by key,
// for the log.
func Merge(running, next Config) (Config, []Change) {
	out := running
	var kept []Change
	merge(&kept, "", reflect.ValueOf(&out).Elem(), reflect.ValueOf(next))
	sort.Slice(kept, func(i, j int) bool { return kept[i].Key < kept[j].Key })
	return out, kept
}

func merge(kept *[]Change, key string, dst, src reflect.Value) {
	if dst.Kind() == reflect.Struct && dst.Type().String() != "time.Time" {
		for i := range dst.NumField() {
			tag := dst.Type().Field(i).Tag.Get("koanf")
			if tag == "" {
				continue
			}
			merge(kept, joinKey(key, tag), dst.Field(i), src.Field(i))
		}
		return
	}
	if reflect.DeepEqual(dst.Interface(), src.Interface()) {
		return
	}
	if !Live(key) {
		*kept = append(*kept, Change{Key: key, Old: formatValue(dst), New: formatValue(src)})
		return
	}
	dst.Set(src)
}

// liveKeys are the keys (or sections, ending in ".") a running kafkaguard applies on reload; Live
// explains the rest.
var liveKeys = []string{
	"limits.max_request_bytes", "limits.api", "limits.max_client_id_bytes", "limits.max_drain_bytes",
	"limits.max_local_answer_bytes", "limits.deny_api", "limits.unknown_api",
	"timeouts.header", "timeouts.frame", "timeouts.idle", "timeouts.dial", "timeouts.write",
	"timeouts.request", "timeouts.shutdown",
	"abuse.offences_before_ban", "abuse.offence_window", "abuse.ban_min", "abuse.ban_max",
	"abuse.forget_after", "abuse.max_connections_per_ip", "abuse.connection_rate_per_ip", "abuse.allow",
	"abuse.weights.",
	"log.level",
	"listeners",
	"admin.token_file", "admin.protect_reads",
}

// Live reports whether a change to key takes effect in a running kafkaguard on reload. The others keep
// the value kafkaguard started with until it restarts: the pool (its budget and chunk size are what
// every connection holds memory in), proxy.* (each connection's queue is sized once), rewrite.*, the
// admin and metrics addresses, abuse.enabled and the source prefix lengths and table size (the gate's
// table is built on them), log.format, and the keys other parts own (SASL, TLS handshake timeout,
// limits.max_unauthenticated_bytes) until they learn to reload.
func Live(key string) bool {
	for _, k := range liveKeys {
		if key == k || strings.HasSuffix(k, ".") && strings.HasPrefix(key, k) {
			return true
		}
	}
	return false
}
