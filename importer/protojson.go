package importer

import (
	"cmp"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Istio's objects are protobuf messages that Istio reads from YAML with
// protojson. The importer reads the few fields it needs into the structs
// of istiotypes.go with decodeProtoJSON, which follows protojson's rules
// for those fields (with DiscardUnknown, as Istio reads them): a field is
// named by its JSON name or its proto name, unknown fields are ignored,
// null is an unset field, strings must be strings, numbers numbers or
// strings holding one, enums names (an unknown name is ignored) or
// numbers, wrappers (BoolValue) their JSON value, and a oneof takes one
// member. Linking istio.io/api for this brought Istio's whole protobuf
// registry (and github.com/golang/protobuf) into every corsauthz process.

// protoJSONScalar is a message with a JSON form of its own (Duration).
type protoJSONScalar interface {
	setProtoJSON(v any) error
}

// protoEnum is an enum: the names of its values, by number.
type protoEnum interface {
	enumNames() []string
}

// protoOneof is a message with a oneof: oneofError says why a decoded
// value is not one (more than one member set).
type protoOneof interface {
	oneofError() error
}

var (
	scalarType = reflect.TypeFor[protoJSONScalar]()
	enumType   = reflect.TypeFor[protoEnum]()
	oneofType  = reflect.TypeFor[protoOneof]()
)

// decodeProtoJSON decodes v, what yaml.v3 decodes a document into (with
// string keys, see jsonable), into dst, a pointer to a struct whose
// fields are tagged pj:"jsonName[,proto_name]".
func decodeProtoJSON(v any, dst any) error {
	return protoJSONValue(v, reflect.ValueOf(dst).Elem(), "")
}

func protoJSONValue(v any, dst reflect.Value, path string) error {
	if v == nil {
		return nil // null: the field stays unset
	}
	if reflect.PointerTo(dst.Type()).Implements(scalarType) {
		if err := dst.Addr().Interface().(protoJSONScalar).setProtoJSON(v); err != nil {
			return fmt.Errorf("%s: %w", fieldName(path), err)
		}
		return nil
	}
	if dst.Type().Implements(enumType) {
		return protoJSONEnum(v, dst, path)
	}
	switch dst.Kind() {
	case reflect.Pointer:
		e := reflect.New(dst.Type().Elem())
		if err := protoJSONValue(v, e.Elem(), path); err != nil {
			return err
		}
		dst.Set(e)
		return nil
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return protoJSONWrong(path, "a string", v)
		}
		dst.SetString(s)
		return nil
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return protoJSONWrong(path, "true or false", v)
		}
		dst.SetBool(b)
		return nil
	case reflect.Uint32, reflect.Int32:
		n, ok := protoJSONInt(v)
		if dst.Kind() == reflect.Int32 {
			if !ok || n < math.MinInt32 || n > math.MaxInt32 {
				return protoJSONWrong(path, "an integer of 32 bits", v)
			}
			dst.SetInt(n)
			return nil
		}
		if !ok || n < 0 || n > math.MaxUint32 {
			return protoJSONWrong(path, "an unsigned integer of 32 bits", v)
		}
		dst.SetUint(uint64(n))
		return nil
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			return protoJSONWrong(path, "a list", v)
		}
		s := reflect.MakeSlice(dst.Type(), len(list), len(list))
		for i, e := range list {
			p := fmt.Sprintf("%s[%d]", path, i)
			if e == nil {
				return fmt.Errorf("%s: null is not a value of a list", p)
			}
			if err := protoJSONValue(e, s.Index(i), p); err != nil {
				return err
			}
		}
		dst.Set(s)
		return nil
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return protoJSONWrong(path, "a mapping", v)
		}
		out := reflect.MakeMapWithSize(dst.Type(), len(m))
		for k, e := range m {
			p := fmt.Sprintf("%s[%q]", path, k)
			if e == nil {
				return fmt.Errorf("%s: null is not a value of a map", p)
			}
			ev := reflect.New(dst.Type().Elem()).Elem()
			if err := protoJSONValue(e, ev, p); err != nil {
				return err
			}
			out.SetMapIndex(reflect.ValueOf(k), ev)
		}
		dst.Set(out)
		return nil
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return protoJSONWrong(path, "a mapping", v)
		}
		t := dst.Type()
		for i := range t.NumField() {
			tag, ok := t.Field(i).Tag.Lookup("pj")
			if !ok {
				continue
			}
			jsonName, protoName, _ := strings.Cut(tag, ",")
			e, inJSON := m[jsonName]
			name := jsonName
			if protoName != "" {
				if pe, inProto := m[protoName]; inProto {
					if inJSON {
						return fmt.Errorf("%s: both %s and %s are set: they are one field", fieldName(path), jsonName, protoName)
					}
					e, name = pe, protoName
				}
			}
			if err := protoJSONValue(e, dst.Field(i), joinPath(path, name)); err != nil {
				return err
			}
		}
		if o, ok := dst.Addr().Interface().(protoOneof); ok {
			if err := o.oneofError(); err != nil {
				return fmt.Errorf("%s: %w", fieldName(path), err)
			}
		}
		return nil
	}
	panic(fmt.Sprintf("decodeProtoJSON: %s is not a type it decodes", dst.Type()))
}

func protoJSONEnum(v any, dst reflect.Value, path string) error {
	names := dst.Interface().(protoEnum).enumNames()
	switch t := v.(type) {
	case string:
		for i, n := range names {
			if n == t {
				dst.SetInt(int64(i))
				return nil
			}
		}
		return nil // an unknown name is discarded, as protojson does with DiscardUnknown
	default:
		n, ok := protoJSONInt(v)
		if _, isString := v.(string); isString || !ok || n < math.MinInt32 || n > math.MaxInt32 {
			return protoJSONWrong(path, "one of "+strings.Join(names, ", "), v)
		}
		dst.SetInt(n)
		return nil
	}
}

// protoJSONInt reads an integer written as a number or a string.
func protoJSONInt(v any) (int64, bool) {
	switch t := v.(type) {
	case int:
		return int64(t), true
	case int64:
		return t, true
	case uint64:
		if t > math.MaxInt64 {
			return 0, false
		}
		return int64(t), true
	case float64:
		if t != math.Trunc(t) || math.Abs(t) > 1<<53 {
			return 0, false
		}
		return int64(t), true
	case string:
		if n, err := strconv.ParseInt(t, 10, 64); err == nil {
			return n, true
		}
		if f, err := strconv.ParseFloat(t, 64); err == nil && !strings.ContainsAny(t, "xXpPnN_") {
			return protoJSONInt(f)
		}
	}
	return 0, false
}

func protoJSONWrong(path, want string, got any) error {
	return fmt.Errorf("%s: %s expected, got %s", fieldName(path), want, describeValue(got))
}

// describeValue names a value in an error.
func describeValue(v any) string {
	switch t := v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return strconv.Quote(t)
	default:
		return fmt.Sprint(t)
	}
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func fieldName(path string) string {
	if path == "" {
		return "the object"
	}
	return path
}

// protoDuration is google.protobuf.Duration: in protojson a string of
// seconds with an "s" ("86400s", "1.5s"). Istio also accepts Go's
// spelling ("24h", "1m30s"), which its own tools write.
type protoDuration struct {
	Seconds int64
	Nanos   int32
}

// maxDurationSeconds is google.protobuf.Duration's range, about 10,000 years.
const maxDurationSeconds = 315576000000

func (d *protoDuration) setProtoJSON(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("a duration such as \"86400s\" expected, got %s", describeValue(v))
	}
	if gd, err := time.ParseDuration(s); err == nil && strings.ContainsAny(strings.TrimSuffix(s, "s"), "hmuµn") {
		d.Seconds, d.Nanos = int64(gd/time.Second), int32(gd%time.Second)
		return nil
	}
	num, ok := strings.CutSuffix(s, "s")
	neg := strings.HasPrefix(num, "-")
	whole, frac, hasFrac := strings.Cut(strings.TrimPrefix(num, "-"), ".")
	if !ok || whole == "" && frac == "" || !allDigits(whole) || !allDigits(frac) || len(frac) > 9 || hasFrac && frac == "" {
		return fmt.Errorf("invalid duration %q: a number of seconds followed by s expected, such as \"86400s\"", s)
	}
	secs, err := strconv.ParseInt(cmp.Or(whole, "0"), 10, 64)
	if err != nil || secs > maxDurationSeconds {
		return fmt.Errorf("invalid duration %q: out of range", s)
	}
	var nanos int64
	if frac != "" {
		nanos, _ = strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 32)
	}
	if neg {
		secs, nanos = -secs, -nanos
	}
	d.Seconds, d.Nanos = secs, int32(nanos)
	return nil
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
