package config

import (
	"encoding"
	"fmt"
	"reflect"
	"time"
)

// Map returns the config as nested maps keyed as in the YAML file, each value written as a file would
// write it (sizes as 1MiB, durations as 1m30s, rates as 50/s, prefixes as 10.0.0.0/8), for GET /config.
// Nothing in a Config is secret: files holding keys and the admin token are named by path only, and
// their contents never enter a Config.
func (c Config) Map() map[string]any {
	return plain(reflect.ValueOf(c)).(map[string]any)
}

func plain(v reflect.Value) any {
	if v.Type() == durationType {
		return time.Duration(v.Int()).String()
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok && v.Kind() != reflect.Pointer {
		b, err := m.MarshalText()
		if err != nil {
			return fmt.Sprint(v.Interface())
		}
		return string(b)
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return plain(v.Elem())
	case reflect.Struct:
		out := map[string]any{}
		for i := range v.NumField() {
			if tag := v.Type().Field(i).Tag.Get("koanf"); tag != "" {
				out[tag] = plain(v.Field(i))
			}
		}
		return out
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range v.Len() {
			out[i] = plain(v.Index(i))
		}
		return out
	case reflect.Map:
		out := map[string]any{}
		for _, k := range v.MapKeys() {
			out[fmt.Sprint(k.Interface())] = plain(v.MapIndex(k))
		}
		return out
	}
	return v.Interface()
}
