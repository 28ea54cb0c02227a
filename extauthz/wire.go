package extauthz

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// This file reads a CheckRequest straight from its wire form: the handful
// of values CORS needs (method, host, path, four request headers and the
// cors_policy context extension), without building the message, its
// header map and every string in it, which is most of what the standard
// codec spends on a Check.
//
// The reader accepts exactly the inputs proto.Unmarshal accepts and reads
// the same values from them (FuzzWireDecode checks both):
//
//   - every field of every message in the CheckRequest tree is checked as
//     proto.Unmarshal checks it, from a schema built from the generated
//     descriptors at start-up: lengths and varints in bounds, field numbers
//     valid, end-group tags matched, strings valid UTF-8 (proto3), and at
//     most protowire.DefaultRecursionLimit levels of nesting, counted the
//     way the protobuf runtime counts them (each message and each map
//     entry is a level);
//   - a known field with an unexpected wire type is an unknown field, and
//     unknown fields are skipped;
//   - a singular field read twice keeps its last value; a message field read
//     twice merges, which for the values read here means its fields keep
//     their last values and its maps and lists grow; the last map entry with
//     a given key wins.
//
// Fields may come in any order, as in any protobuf message.

// The reader's errors, named after the protobuf runtime's. Callers never
// see them: on any error the codec has the standard codec read the
// message, and answers with its error (see wireCodec.Unmarshal).
var (
	errWireDecode = errors.New("cannot parse invalid wire-format data")
	errWireUTF8   = errors.New("string field contains invalid UTF-8")
	errWireDepth  = errors.New("exceeded maximum recursion depth")
	// errWireTooMany stops the reader at the first header entry past
	// limits.HeaderCount: the request is refused, and nothing after that
	// entry is read (decodeCheck).
	errWireTooMany = errors.New("more header entries than the limit")
)

// The CORS request headers, in the order of wireRequest.headers.
const (
	hdrOrigin = iota
	hdrRequestMethod
	hdrRequestHeaders
	hdrRequestPrivateNetwork
	numCORSHeaders
)

var corsHeaderNames = [numCORSHeaders]string{
	hdrOrigin:                "origin",
	hdrRequestMethod:         "access-control-request-method",
	hdrRequestHeaders:        "access-control-request-headers",
	hdrRequestPrivateNetwork: "access-control-request-private-network",
}

// Field numbers read, from envoy/service/auth/v3/{external_auth,attribute_context}.proto
// and envoy/config/core/v3/base.proto.
const (
	fieldCheckRequestAttributes = 1  // CheckRequest.attributes
	fieldAttributesRequest      = 4  // AttributeContext.request
	fieldAttributesExtensions   = 10 // AttributeContext.context_extensions
	fieldRequestHTTP            = 2  // AttributeContext.Request.http
	fieldHTTPMethod             = 2  // AttributeContext.HttpRequest.method
	fieldHTTPHeaders            = 3  // AttributeContext.HttpRequest.headers
	fieldHTTPPath               = 4  // AttributeContext.HttpRequest.path
	fieldHTTPHost               = 5  // AttributeContext.HttpRequest.host
	fieldHTTPHeaderMap          = 13 // AttributeContext.HttpRequest.header_map
	fieldHeaderMapHeaders       = 1  // HeaderMap.headers
	fieldHeaderValueKey         = 1  // HeaderValue.key
	fieldHeaderValueValue       = 2  // HeaderValue.value
	fieldHeaderValueRawValue    = 3  // HeaderValue.raw_value
	fieldMapEntryKey            = 1  // every map entry's key
	fieldMapEntryValue          = 2  // and value
)

// The tags of a map entry's key and value, both length-delimited.
const (
	mapEntryKeyTag   = fieldMapEntryKey<<3 | byte(protowire.BytesType)
	mapEntryValueTag = fieldMapEntryValue<<3 | byte(protowire.BytesType)
)

// maxWireDepth is proto.Unmarshal's default nesting limit.
const maxWireDepth = protowire.DefaultRecursionLimit

// wireDenseFieldNumbers: field numbers below it are looked up in a slice.
const wireDenseFieldNumbers = 64

// wireRequest is what the fast path reads of a CheckRequest. Its byte
// slices point into the message being decoded; [wireRequest.fill] copies
// them out.
type wireRequest struct {
	hasHTTP                    bool
	method, host, path, policy []byte
	// headers are the CORS headers of attributes.request.http.headers;
	// headerEntries counts that map's entries as read (a key read twice
	// counts twice, so that no message past limits.HeaderCount is decided).
	headers       [numCORSHeaders][]byte
	headerEntries int
	originPresent bool // the headers map has an "origin" key
	// headerMap holds, in order, the header_map entries whose key is a CORS
	// header name in any case (at most limits.HeaderCount+1 of them: more
	// refuse the request anyway); headerMapLen counts all its entries.
	headerMap    []wireHeaderValue
	headerMapLen int
}

type wireHeaderValue struct {
	which      int // hdrOrigin...
	value, raw []byte
}

// decodeCheckRequest reads b, a serialized CheckRequest, into w. It fails
// exactly when proto.Unmarshal fails on b.
func decodeCheckRequest(b []byte, w *wireRequest) error {
	*w = wireRequest{headerMap: w.headerMap[:0]}
	return w.checkRequest(b, maxWireDepth)
}

// The varints of a CheckRequest are almost all one byte (tags, and the
// lengths of header names and values), so each reader below has that case
// inline and calls protowire for the others.

// consumeBytes is protowire.ConsumeBytes; n < 0 is an error.
func consumeBytes(b []byte) (v []byte, n int) {
	if len(b) > 0 && b[0] < 0x80 {
		if m := int(b[0]); m < len(b) {
			return b[1 : 1+m], 1 + m
		}
		return nil, -1
	}
	return consumeBytesSlow(b)
}

func consumeBytesSlow(b []byte) (v []byte, n int) {
	m, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return nil, n
	}
	if m > uint64(len(b)-n) {
		return nil, -1
	}
	return b[n : n+int(m)], n + int(m)
}

// consumeAnyTag reads a tag as protowire.ConsumeTag and the protobuf
// runtime do: the field number must be in [1, MaxValidNumber].
func consumeAnyTag(b []byte) (protowire.Number, protowire.Type, int, error) {
	if len(b) > 0 && b[0] < 0x80 && b[0] >= 1<<3 {
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1, nil
	}
	return consumeAnyTagSlow(b)
}

func consumeAnyTagSlow(b []byte) (protowire.Number, protowire.Type, int, error) {
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, 0, errWireDecode
	}
	num := v >> 3
	if num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) {
		return 0, 0, 0, errWireDecode
	}
	return protowire.Number(num), protowire.Type(v & 7), n, nil
}

// consumeTag reads the tag of a message's field, as consumeAnyTag; an
// end-group tag is an error, as no message read here is a group.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int, error) {
	num, typ, n, err := consumeAnyTag(b)
	if typ == protowire.EndGroupType {
		return 0, 0, 0, errWireDecode
	}
	return num, typ, n, err
}

// consumeString reads a string field's value: valid UTF-8 (proto3).
// ascii says the enclosing message is all ASCII, so the value is valid
// without a look.
func consumeString(b []byte, ascii bool) ([]byte, int, error) {
	v, n := consumeBytes(b)
	if n < 0 {
		return nil, 0, errWireDecode
	}
	if !ascii && !utf8.Valid(v) {
		return nil, 0, errWireUTF8
	}
	return v, n, nil
}

// isASCII reports whether b is all ASCII. A message that is holds only
// valid UTF-8 strings: its tags and lengths are single bytes below 128,
// and so is every byte of its strings. Checking a whole HttpRequest at
// once costs less than checking each of its strings.
func isASCII(b []byte) bool {
	for len(b) >= 16 {
		if (binary.LittleEndian.Uint64(b)|binary.LittleEndian.Uint64(b[8:]))&0x8080808080808080 != 0 {
			return false
		}
		b = b[16:]
	}
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// consumeMessage reads a message field's bytes.
func consumeMessage(b []byte) ([]byte, int, error) {
	v, n := consumeBytes(b)
	if n < 0 {
		return nil, 0, errWireDecode
	}
	return v, n, nil
}

func (w *wireRequest) checkRequest(b []byte, depth int) error {
	if depth--; depth < 0 {
		return errWireDepth
	}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if num == fieldCheckRequestAttributes && typ == protowire.BytesType {
			v, n, err := consumeMessage(b)
			if err != nil {
				return err
			}
			if err := w.attributes(v, depth); err != nil {
				return err
			}
			b = b[n:]
			continue
		}
		if n, err = wireSchemas.checkRequest.skip(num, typ, b, depth); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (w *wireRequest) attributes(b []byte, depth int) error {
	if depth--; depth < 0 {
		return errWireDepth
	}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch {
		case num == fieldAttributesRequest && typ == protowire.BytesType:
			v, n, err := consumeMessage(b)
			if err != nil {
				return err
			}
			if err := w.requestMessage(v, depth); err != nil {
				return err
			}
			b = b[n:]
			continue
		case num == fieldAttributesExtensions && typ == protowire.BytesType:
			// A map entry is a level of nesting of its own.
			if depth-1 < 0 {
				return errWireDepth
			}
			v, n, err := consumeMessage(b)
			if err != nil {
				return err
			}
			key, value, err := stringMapEntry(v, false)
			if err != nil {
				return err
			}
			if string(key) == ContextExtensionPolicy {
				w.policy = value
			}
			b = b[n:]
			continue
		}
		if n, err = wireSchemas.attributes.skip(num, typ, b, depth); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (w *wireRequest) requestMessage(b []byte, depth int) error {
	if depth--; depth < 0 {
		return errWireDepth
	}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if num == fieldRequestHTTP && typ == protowire.BytesType {
			v, n, err := consumeMessage(b)
			if err != nil {
				return err
			}
			w.hasHTTP = true
			if err := w.http(v, depth); err != nil {
				return err
			}
			b = b[n:]
			continue
		}
		if n, err = wireSchemas.request.skip(num, typ, b, depth); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (w *wireRequest) http(b []byte, depth int) error {
	if depth--; depth < 0 {
		return errWireDepth
	}
	ascii := isASCII(b)
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if typ == protowire.BytesType {
			var dst *[]byte
			switch num {
			case fieldHTTPMethod:
				dst = &w.method
			case fieldHTTPPath:
				dst = &w.path
			case fieldHTTPHost:
				dst = &w.host
			case fieldHTTPHeaders:
				if depth-1 < 0 {
					return errWireDepth
				}
				v, n, err := consumeMessage(b)
				if err != nil {
					return err
				}
				key, value, err := stringMapEntry(v, ascii)
				if err != nil {
					return err
				}
				if w.headerEntries++; w.headerEntries > limits.HeaderCount {
					return errWireTooMany
				}
				// Envoy writes the keys in lower case; a key in any other
				// case is another header, as in the map proto.Unmarshal
				// builds.
				for i := range corsHeaderNames {
					if string(key) == corsHeaderNames[i] {
						w.headers[i] = value
						w.originPresent = w.originPresent || i == hdrOrigin
						break
					}
				}
				b = b[n:]
				continue
			case fieldHTTPHeaderMap:
				v, n, err := consumeMessage(b)
				if err != nil {
					return err
				}
				if err := w.headerMapMessage(v, depth); err != nil {
					return err
				}
				b = b[n:]
				continue
			}
			if dst != nil {
				v, n, err := consumeString(b, ascii)
				if err != nil {
					return err
				}
				*dst = v
				b = b[n:]
				continue
			}
		}
		if n, err = wireSchemas.http.skip(num, typ, b, depth); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (w *wireRequest) headerMapMessage(b []byte, depth int) error {
	if depth--; depth < 0 {
		return errWireDepth
	}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if num == fieldHeaderMapHeaders && typ == protowire.BytesType {
			v, n, err := consumeMessage(b)
			if err != nil {
				return err
			}
			if w.headerMapLen++; w.headerMapLen > limits.HeaderCount {
				return errWireTooMany
			}
			if err := w.headerValue(v, depth); err != nil {
				return err
			}
			b = b[n:]
			continue
		}
		if n, err = wireSchemas.headerMap.skip(num, typ, b, depth); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// headerValue reads one header_map entry, and keeps it when its key names
// a CORS header in any case (readHeaderMap compares with EqualFold).
func (w *wireRequest) headerValue(b []byte, depth int) error {
	if depth--; depth < 0 {
		return errWireDepth
	}
	var key, value, raw []byte
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if typ == protowire.BytesType {
			switch num {
			case fieldHeaderValueKey, fieldHeaderValueValue:
				v, n, err := consumeString(b, false)
				if err != nil {
					return err
				}
				if num == fieldHeaderValueKey {
					key = v
				} else {
					value = v
				}
				b = b[n:]
				continue
			case fieldHeaderValueRawValue:
				v, n := consumeBytes(b)
				if n < 0 {
					return errWireDecode
				}
				raw = v
				b = b[n:]
				continue
			}
		}
		if n, err = wireSchemas.headerValue.skip(num, typ, b, depth); err != nil {
			return err
		}
		b = b[n:]
	}
	for i := range corsHeaderNames {
		if strings.EqualFold(string(key), corsHeaderNames[i]) {
			if w.headerMap == nil {
				w.headerMap = make([]wireHeaderValue, 0, numCORSHeaders)
			}
			w.headerMap = append(w.headerMap, wireHeaderValue{which: i, value: value, raw: raw})
			break
		}
	}
	return nil
}

// stringMapEntry reads a map<string, string> entry (the caller counts
// its level of nesting): the last key and value read, each "" when
// absent. ascii is as for consumeString.
func stringMapEntry(b []byte, ascii bool) (key, value []byte, err error) {
	// The layout every encoder writes, key then value, each with a
	// one-byte length: read at once. Anything else takes the loop.
	if len(b) >= 4 && b[0] == mapEntryKeyTag && b[1] < 0x80 {
		k := int(b[1])
		if k+4 <= len(b) && b[k+2] == mapEntryValueTag && k+4+int(b[k+3]) == len(b) && b[k+3] < 0x80 {
			key, value = b[2:2+k], b[k+4:]
			if !ascii && (!utf8.Valid(key) || !utf8.Valid(value)) {
				return nil, nil, errWireUTF8
			}
			return key, value, nil
		}
	}
	for len(b) > 0 {
		num, typ, n, err := consumeAnyTag(b)
		if err != nil {
			return nil, nil, err
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fieldMapEntryKey || num == fieldMapEntryValue) {
			v, n, err := consumeString(b, ascii)
			if err != nil {
				return nil, nil, err
			}
			if num == fieldMapEntryKey {
				key = v
			} else {
				value = v
			}
			b = b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return nil, nil, errWireDecode
		}
		b = b[n:]
	}
	return key, value, nil
}

// fill fills r from w as readRequest fills it from the unmarshalled
// message, and returns readRequest's message when the request cannot be
// read. The values are copied out of the message, in one allocation.
func (w *wireRequest) fill(r *policy.Request) string {
	if !w.hasHTTP {
		return msgNoHTTP
	}
	if msg := limits.CheckRequestLine(httpFields, len(w.method), len(w.host), len(w.path)); msg != "" {
		return msg
	}
	if msg := w.countProblem(); msg != "" {
		return msg
	}
	var cors [numCORSHeaders][]byte
	var joined [numCORSHeaders]int // header_map values joined into each
	var joinedLen [numCORSHeaders]int
	switch {
	case w.headerEntries > 0:
		cors = w.headers
		r.OriginPresent = w.originPresent
	case len(w.headerMap) > 0:
		for _, hv := range w.headerMap {
			if joined[hv.which] > 0 {
				joinedLen[hv.which]++ // the ","
			}
			joined[hv.which]++
			joinedLen[hv.which] += len(hv.chosen())
		}
		r.OriginPresent = joined[hdrOrigin] > 0
	}
	for i := range numCORSHeaders {
		field := "headers."
		n := len(cors[i])
		if joined[i] > 0 {
			field, n = "header_map.", joinedLen[i]
		}
		if msg := limits.TooLong(httpFields+field, corsHeaderNames[i], n, limits.HeaderValueLen); msg != "" {
			return msg
		}
	}
	if msg := limits.TooLong("", policyField, len(w.policy), limits.HeaderValueLen); msg != "" {
		return msg
	}
	n := len(w.method) + len(w.host) + len(w.path) + len(w.policy)
	for i := range cors {
		n += len(cors[i])
	}
	for _, hv := range w.headerMap {
		if joined[hv.which] > 0 {
			n += len(hv.chosen()) + 1
		}
	}
	var sb strings.Builder
	sb.Grow(n)
	take := func(b []byte) string {
		start := sb.Len()
		sb.Write(b)
		return sb.String()[start:]
	}
	r.Method, r.Host, r.Path, r.Policy = take(w.method), take(w.host), take(w.path), take(w.policy)
	dsts := [numCORSHeaders]*string{&r.Origin, &r.RequestMethod, &r.RequestHeaders, &r.RequestPrivateNetwork}
	for i, v := range cors {
		*dsts[i] = take(v)
	}
	for i := range numCORSHeaders {
		if joined[i] == 0 {
			continue
		}
		// Repeated headers are joined with "," as readHeaderMap joins
		// them (a value joins the ones before only once they are not
		// empty), appended in order: the value is one run of the builder.
		start := sb.Len()
		for _, hv := range w.headerMap {
			if hv.which != i {
				continue
			}
			if sb.Len() > start {
				sb.WriteByte(',')
			}
			sb.Write(hv.chosen())
		}
		*dsts[i] = sb.String()[start:]
	}
	return ""
}

// chosen is the entry's value as readHeaderMap reads it: raw_value when
// set, value otherwise.
func (hv *wireHeaderValue) chosen() []byte {
	if len(hv.raw) > 0 {
		return hv.raw
	}
	return hv.value
}

// The schema the reader checks every other field against.

// wireKind is how a field's value is checked.
type wireKind uint8

const (
	kindUnknown wireKind = iota
	kindVarint
	kindFixed32
	kindFixed64
	kindBytes
	kindString // UTF-8 checked
	kindMessage
	kindMap
)

type wireField struct {
	kind     wireKind
	list     bool         // repeated; a numeric list also takes the packed form
	msg      *wireMessage // kindMessage
	key, val *wireField   // kindMap
}

type wireMessage struct {
	name   protoreflect.FullName
	dense  []wireField // by field number, up to wireDenseFieldNumbers
	sparse map[protowire.Number]*wireField
}

func (m *wireMessage) field(num protowire.Number) *wireField {
	if int(num) < len(m.dense) {
		return &m.dense[num]
	}
	return m.sparse[num]
}

var wireSchemas = func() (s struct {
	checkRequest, attributes, request, http, headerMap, headerValue *wireMessage
}) {
	seen := map[protoreflect.FullName]*wireMessage{}
	s.checkRequest = buildWireMessage((&authv3.CheckRequest{}).ProtoReflect().Descriptor(), seen)
	s.attributes = seen["envoy.service.auth.v3.AttributeContext"]
	s.request = seen["envoy.service.auth.v3.AttributeContext.Request"]
	s.http = seen["envoy.service.auth.v3.AttributeContext.HttpRequest"]
	s.headerMap = seen["envoy.config.core.v3.HeaderMap"]
	s.headerValue = seen["envoy.config.core.v3.HeaderValue"]
	if s.attributes == nil || s.request == nil || s.http == nil || s.headerMap == nil || s.headerValue == nil {
		panic("server: the CheckRequest descriptors lack a message the fast path reads")
	}
	return s
}()

// buildWireMessage builds the schema of md and of every message it holds.
// It panics on what the reader does not support (groups, extension
// ranges, lazy fields): none is in the CheckRequest tree, and the panic at
// start-up says so if a new go-control-plane version adds one.
func buildWireMessage(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]*wireMessage) *wireMessage {
	if m := seen[md.FullName()]; m != nil {
		return m
	}
	m := &wireMessage{name: md.FullName()}
	seen[md.FullName()] = m
	if md.ExtensionRanges().Len() > 0 {
		panic(fmt.Sprintf("server: %s has extension ranges, which the CheckRequest reader does not support", md.FullName()))
	}
	fields := md.Fields()
	maxDense := 0
	for i := range fields.Len() {
		if n := int(fields.Get(i).Number()); n < wireDenseFieldNumbers {
			maxDense = max(maxDense, n)
		}
	}
	m.dense = make([]wireField, maxDense+1)
	for i := range fields.Len() {
		fd := fields.Get(i)
		f := buildWireField(fd, seen)
		if n := fd.Number(); int(n) < len(m.dense) {
			m.dense[n] = f
		} else {
			if m.sparse == nil {
				m.sparse = map[protowire.Number]*wireField{}
			}
			m.sparse[n] = &f
		}
	}
	return m
}

func buildWireField(fd protoreflect.FieldDescriptor, seen map[protoreflect.FullName]*wireMessage) wireField {
	if l, ok := fd.(interface{ IsLazy() bool }); ok && l.IsLazy() {
		panic(fmt.Sprintf("server: %s is lazy, which the CheckRequest reader does not support", fd.FullName()))
	}
	if fd.IsMap() {
		k := buildWireField(fd.MapKey(), seen)
		v := buildWireField(fd.MapValue(), seen)
		return wireField{kind: kindMap, key: &k, val: &v}
	}
	f := wireField{list: fd.IsList()}
	switch fd.Kind() {
	case protoreflect.BoolKind, protoreflect.EnumKind,
		protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Uint32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		f.kind = kindVarint
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		f.kind = kindFixed32
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		f.kind = kindFixed64
	case protoreflect.StringKind:
		f.kind = kindBytes
		if enforceUTF8(fd) {
			f.kind = kindString
		}
	case protoreflect.BytesKind:
		f.kind = kindBytes
	case protoreflect.MessageKind:
		f.kind = kindMessage
		f.msg = buildWireMessage(fd.Message(), seen)
	default: // GroupKind
		panic(fmt.Sprintf("server: %s is a %v, which the CheckRequest reader does not support", fd.FullName(), fd.Kind()))
	}
	return f
}

// enforceUTF8 reports whether proto.Unmarshal checks fd's strings, as the
// protobuf runtime decides it (internal/strs.EnforceUTF8).
func enforceUTF8(fd protoreflect.FieldDescriptor) bool {
	if fd.Syntax() == protoreflect.Editions {
		if e, ok := fd.(interface{ EnforceUTF8() bool }); ok {
			return e.EnforceUTF8()
		}
	}
	return fd.Syntax() == protoreflect.Proto3
}

// skip checks and skips the value of field num of m, found with wire type
// typ at the start of b, and returns its length. depth is what is left
// for the messages it holds.
func (m *wireMessage) skip(num protowire.Number, typ protowire.Type, b []byte, depth int) (int, error) {
	f := m.field(num)
	if f == nil {
		return skipUnknown(num, typ, b)
	}
	return f.skip(num, typ, b, depth)
}

func (f *wireField) skip(num protowire.Number, typ protowire.Type, b []byte, depth int) (int, error) {
	switch f.kind {
	case kindMap:
		// The runtime counts the entry as a level before it looks at the
		// wire type.
		if depth--; depth < 0 {
			return 0, errWireDepth
		}
		if typ != protowire.BytesType {
			break
		}
		v, n, err := consumeMessage(b)
		if err != nil {
			return 0, err
		}
		return n, f.skipMapEntry(v, depth)
	case kindMessage:
		if typ != protowire.BytesType {
			break
		}
		v, n, err := consumeMessage(b)
		if err != nil {
			return 0, err
		}
		return n, f.msg.check(v, depth)
	case kindString:
		if typ != protowire.BytesType {
			break
		}
		_, n, err := consumeString(b, false)
		return n, err
	case kindBytes:
		if typ != protowire.BytesType {
			break
		}
		return bytesLen(consumeBytes(b))
	case kindVarint, kindFixed32, kindFixed64:
		if f.list && typ == protowire.BytesType {
			return f.skipPacked(b)
		}
		if typ != f.scalarType() {
			break
		}
		return skipUnknown(num, typ, b)
	}
	return skipUnknown(num, typ, b)
}

func (f *wireField) scalarType() protowire.Type {
	switch f.kind {
	case kindFixed32:
		return protowire.Fixed32Type
	case kindFixed64:
		return protowire.Fixed64Type
	}
	return protowire.VarintType
}

// skipPacked checks a packed list of numbers.
func (f *wireField) skipPacked(b []byte) (int, error) {
	v, n := consumeBytes(b)
	if n < 0 {
		return 0, errWireDecode
	}
	for len(v) > 0 {
		var m int
		switch f.kind {
		case kindFixed32:
			_, m = protowire.ConsumeFixed32(v)
		case kindFixed64:
			_, m = protowire.ConsumeFixed64(v)
		default:
			_, m = protowire.ConsumeVarint(v)
		}
		if m < 0 {
			return 0, errWireDecode
		}
		v = v[m:]
	}
	return n, nil
}

func (f *wireField) skipMapEntry(b []byte, depth int) error {
	for len(b) > 0 {
		num, typ, n, err := consumeAnyTag(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case fieldMapEntryKey:
			n, err = f.key.skip(num, typ, b, depth)
		case fieldMapEntryValue:
			n, err = f.val.skip(num, typ, b, depth)
		default:
			n, err = skipUnknown(num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// check checks a whole message of this schema.
func (m *wireMessage) check(b []byte, depth int) error {
	if depth--; depth < 0 {
		return errWireDepth
	}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if n, err = m.skip(num, typ, b, depth); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func skipUnknown(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
	n := protowire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return 0, errWireDecode
	}
	return n, nil
}

func bytesLen(_ []byte, n int) (int, error) {
	if n < 0 {
		return 0, errWireDecode
	}
	return n, nil
}

// countProblem returns "" or readRequest's message for more header entries
// than limits.HeaderCount, in headers or in header_map, counted as sent.
func (w *wireRequest) countProblem() string {
	switch {
	case w.headerEntries > limits.HeaderCount:
		return headerCountProblem("headers")
	case w.headerMapLen > limits.HeaderCount:
		return headerCountProblem("header_map")
	}
	return ""
}

// decodeCheck reads a serialized CheckRequest for the fast path into r,
// and returns the readRequest message when the request cannot be read,
// such as one past the limits. It reads b once at most and builds nothing
// of what it skips: a request past the header count is refused at the
// first entry too many, one past another limit once read, and no path
// decodes it again. Otherwise it fails exactly when
// proto.Unmarshal fails.
func decodeCheck(b []byte, w *wireRequest, r *policy.Request) (problem string, err error) {
	if err := decodeCheckRequest(b, w); err != nil {
		if errors.Is(err, errWireTooMany) {
			return w.countProblem(), nil
		}
		return "", err
	}
	return w.fill(r), nil
}
