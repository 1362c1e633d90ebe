package config

import (
	"errors"
	"reflect"
	"strings"
)

// EnvPrefix starts every environment variable Load reads. After it, "__"
// separates nesting levels and names are matched lower-cased:
// KAFKAGUARD_LIMITS__MAX_REQUEST_BYTES sets limits.max_request_bytes.
const EnvPrefix = "KAFKAGUARD_"

// envLevel separates nesting levels in variable names.
const envLevel = "__"

// fromEnv turns the KAFKAGUARD_ variables of environ into a nested map for
// koanf, checking every name against the Config schema first so that a
// misspelt variable is an error naming it. origins maps each config key set
// to the variable that set it.
func fromEnv(environ []string) (tree map[string]any, origins map[string]string, problems []*KeyError) {
	tree = map[string]any{}
	origins = map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		parts := strings.Split(strings.ToLower(name[len(EnvPrefix):]), envLevel)
		path, err := envPath(parts)
		if err != nil {
			problems = append(problems, &KeyError{Key: strings.Join(parts, "."), Source: name, Err: err})
			continue
		}
		node := tree
		for _, p := range path[:len(path)-1] {
			child, ok := node[p].(map[string]any)
			if !ok {
				child = map[string]any{}
				node[p] = child
			}
			node = child
		}
		node[path[len(path)-1]] = value
		origins[strings.Join(path, ".")] = name
	}
	return tree, origins, problems
}

// envPath checks a lower-cased variable path against the Config schema and
// returns it with map keys respelt (API names as kmsg spells them).
func envPath(parts []string) ([]string, error) {
	t := configType
	out := make([]string, 0, len(parts))
	for i, p := range parts {
		if p == "" {
			return nil, &detailError{sentinel: ErrUnknownKey, msg: "empty key segment (levels are separated by exactly two underscores)"}
		}
		switch {
		case t.Kind() == reflect.Map:
			// The only map is limits.api, keyed by API name; Validate judges
			// the name, so an unknown one is reported there with a suggestion.
			p = canonicalAPIName(p)
			t = t.Elem()
		case isSection(t):
			f, ok := fieldByKey(t, p)
			if !ok {
				return nil, unknownKey(p, structKeys(t))
			}
			t = f.Type
		default:
			return nil, unknownKey(p, nil)
		}
		out = append(out, p)
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct && t.Elem() != prefixType {
			return nil, errors.New("lists of sections cannot be set from the environment; use the YAML file")
		}
		if i == len(parts)-1 && (isSection(t) || t.Kind() == reflect.Map) {
			return nil, invalidf("is a section, not a value; set one of its keys, e.g. " +
				EnvPrefix + strings.ToUpper(strings.Join(out, envLevel)) + envLevel + "...")
		}
	}
	if len(out) == 0 {
		return nil, &detailError{sentinel: ErrUnknownKey, msg: "empty key"}
	}
	return out, nil
}

// isSection reports whether t is a struct of keys rather than a value type
// that happens to be a struct (Rate, netip.Prefix).
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != rateType && t != prefixType
}
