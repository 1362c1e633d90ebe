package config

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// Load reads the YAML file at path (path "" means defaults only), applies
// overrides from environ (in os.Environ form, see doc.go) and returns the
// result without validating it; call Validate next.
//
// A missing, unreadable or malformed file is reported with its name, as one
// error matching ErrFile, and the zero Config. Every other problem
// (unknown keys in the file or the environment, values of the wrong type, bad
// sizes, durations, rates or CIDRs) is a *KeyError naming its key, all of them
// joined with errors.Join. Keys left unset keep their Default values. Alongside
// such errors Load still returns what it could decode, so a caller that wants
// every problem at once may run Validate on it as well.
func Load(path string, environ []string) (Config, error) {
	k := koanf.New(".")
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				return Config{}, &fileError{fmt.Errorf("read config: %w", err)}
			}
			return Config{}, &fileError{fmt.Errorf("parse config %s: %w", path, err)}
		}
	}

	tree, origins, problems := fromEnv(environ)
	if len(tree) > 0 {
		if err := k.Load(mapProvider(tree), nil); err != nil {
			return Config{}, &fileError{fmt.Errorf("apply environment: %w", err)}
		}
	}

	cfg := Default()
	err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook:  decodeHook,
			ErrorUnused: true,
			TagName:     "koanf",
			// Keys match exactly: "Max_Request_Bytes" is a typo to report, not
			// a spelling to accept.
			MatchName: func(key, field string) bool { return key == field },
		},
	})
	if err != nil {
		problems = append(problems, decodeProblems(err, origins)...)
	}
	if len(problems) == 0 {
		return cfg, nil
	}
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].Key < problems[j].Key })
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return cfg, errors.Join(errs...)
}

// LoadValid is Load followed by Validate, reporting every problem once: a file
// that cannot be read or parsed (ErrFile) stops there, since validating the
// empty config left behind would only add bogus problems; and a key Load
// already reported (a value that does not decode, such as a bad CIDR) is not
// reported again by Validate for the placeholder left in its place.
func LoadValid(path string, environ []string) (Config, error) {
	cfg, err := Load(path, environ)
	if errors.Is(err, ErrFile) {
		return cfg, err
	}
	reported := map[string]bool{}
	var all []error
	if err != nil {
		for _, e := range flatten(err) {
			var ke *KeyError
			if errors.As(e, &ke) {
				reported[ke.Key] = true
			}
			all = append(all, e)
		}
	}
	if verr := cfg.Validate(); verr != nil {
		for _, e := range flatten(verr) {
			var ke *KeyError
			if errors.As(e, &ke) && reported[ke.Key] {
				continue
			}
			all = append(all, e)
		}
	}
	return cfg, errors.Join(all...)
}

// flatten returns the errors an errors.Join holds, or err itself.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// mapProvider hands an already nested map to koanf.
type mapProvider map[string]any

// ReadBytes is not supported: the map is already parsed.
func (m mapProvider) ReadBytes() ([]byte, error) {
	return nil, errors.New("map provider has no bytes")
}

// Read returns the map.
func (m mapProvider) Read() (map[string]any, error) { return m, nil }

// invalidKeysPrefix starts the message mapstructure gives for ErrorUnused.
const invalidKeysPrefix = "has invalid keys: "

// decodeProblems turns mapstructure's joined errors into KeyErrors, one per key.
func decodeProblems(err error, origins map[string]string) []*KeyError {
	var out []*KeyError
	var walk func(error)
	walk = func(err error) {
		de, ok := err.(*mapstructure.DecodeError)
		if !ok {
			// mapstructure joins its DecodeErrors and wraps the lot once more.
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					walk(e)
				}
			} else if inner := errors.Unwrap(err); inner != nil {
				walk(inner)
			} else {
				out = append(out, &KeyError{Key: "(config)", Err: err})
			}
			return
		}
		key := displayKey(de.Name())
		inner := de.Unwrap()
		if msg := inner.Error(); strings.HasPrefix(msg, invalidKeysPrefix) {
			known := keysAt(key)
			for _, name := range strings.Split(strings.TrimPrefix(msg, invalidKeysPrefix), ", ") {
				out = append(out, &KeyError{Key: joinKey(key, name), Err: unknownKey(name, known)})
			}
			return
		}
		out = append(out, &KeyError{Key: key, Source: originOf(key, origins), Err: inner})
	}
	walk(err)
	return out
}

// unknownKey explains an unknown key, suggesting the nearest known one.
func unknownKey(name string, known []string) error {
	msg := ErrUnknownKey.Error()
	if s := suggest(name, known); s != "" {
		msg += " (did you mean " + s + "?)"
	}
	return &detailError{sentinel: ErrUnknownKey, msg: msg}
}

// displayKey rewrites mapstructure's field names into config keys: map entries
// "limits.api[Metadata]" become "limits.api.Metadata"; list indexes stay.
func displayKey(name string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(name, '[')
		if i < 0 {
			b.WriteString(name)
			return b.String()
		}
		j := strings.IndexByte(name[i:], ']')
		if j < 0 {
			b.WriteString(name)
			return b.String()
		}
		b.WriteString(name[:i])
		inside := name[i+1 : i+j]
		if inside != "" && strings.Trim(inside, "0123456789") == "" {
			b.WriteString(name[i : i+j+1])
		} else {
			b.WriteString("." + inside)
		}
		name = name[i+j+1:]
	}
}

// joinKey appends a child key to a parent path ("" is the root).
func joinKey(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}

// originOf names the environment variable a key's value came from, if any.
// Values split from one variable into a list ("limits.deny_api[2]") belong to
// the list's variable.
func originOf(key string, origins map[string]string) string {
	if o, ok := origins[key]; ok {
		return o
	}
	if i := strings.LastIndexByte(key, '['); i > 0 {
		return origins[key[:i]]
	}
	return ""
}

// configType is the reflected Config, the schema keys are checked against.
var configType = reflect.TypeFor[Config]()

// keysAt lists the keys valid directly under a config path, for suggestions.
func keysAt(path string) []string {
	t := configType
	if path != "" {
		for _, seg := range strings.Split(path, ".") {
			name, _, _ := strings.Cut(seg, "[")
			f, ok := fieldByKey(t, name)
			if !ok {
				return nil
			}
			t = f.Type
			if t.Kind() == reflect.Pointer { // an optional section (listeners[].tls)
				t = t.Elem()
			}
			for range strings.Count(seg, "[") {
				if t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
					t = t.Elem()
				}
			}
		}
	}
	return structKeys(t)
}

// structKeys lists the koanf keys of a struct type.
func structKeys(t reflect.Type) []string {
	if t.Kind() != reflect.Struct {
		return nil
	}
	keys := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		if k := t.Field(i).Tag.Get("koanf"); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// fieldByKey finds the struct field a koanf key names.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	if t.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("koanf") == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}
