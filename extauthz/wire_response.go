package extauthz

import (
	"maps"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/corsauthz/corsauthz/policy"
)

// This file writes the fast path's answers: the CheckResponse that
// checkResponse builds for a plain decision, serialized directly, byte for byte
// as proto.Marshal serializes it (fields in number order, zero values
// left out). TestWireResponse holds the two together.

// Field numbers written, from envoy/service/auth/v3/external_auth.proto,
// google/rpc/status.proto, envoy/type/v3/http_status.proto and
// envoy/config/core/v3/base.proto.
const (
	fieldResponseStatus         = 1 // CheckResponse.status
	fieldResponseDenied         = 2 // CheckResponse.denied_response
	fieldResponseOK             = 3 // CheckResponse.ok_response
	fieldStatusCode             = 1 // google.rpc.Status.code
	fieldDeniedStatus           = 1 // DeniedHttpResponse.status
	fieldDeniedHeaders          = 2 // DeniedHttpResponse.headers
	fieldHTTPStatusCode         = 1 // HttpStatus.code
	fieldOKResponseHeadersToAdd = 6 // OkHttpResponse.response_headers_to_add
	fieldOptionHeader           = 1 // HeaderValueOption.header
	fieldOptionAppendAction     = 3 // HeaderValueOption.append_action
)

// wireResponse is a serialized CheckResponse, as the fast path's codec
// sends it. Its buffer is never freed to a pool, so a wireResponse may be
// shared between calls.
type wireResponse struct {
	data mem.SliceBuffer
	bufs [1]mem.Buffer
}

func newWireResponse(b []byte) *wireResponse {
	r := &wireResponse{data: b}
	r.bufs[0] = &r.data
	return r
}

// bufferSlice is the message for gRPC: one buffer, read-only.
func (r *wireResponse) bufferSlice() mem.BufferSlice { return r.bufs[:] }

// bytes is the serialized message.
func (r *wireResponse) bytes() []byte { return r.data }

// wireOKNoHeaders is okNoHeaders serialized: every pass-on that adds no
// header (no policy, report-only).
var wireOKNoHeaders = newWireResponse(appendResponse(nil, false, 0, nil))

// encodeDecision serializes the answer to the plain decision d, as
// checkResponse writes it.
func encodeDecision(d *policy.Decision) *wireResponse {
	var buf [policy.MaxHeaders]policy.Header
	headers := d.AppendResponseHeaders(buf[:0])
	if !d.Direct() && len(headers) == 0 {
		return wireOKNoHeaders
	}
	return newWireResponse(appendResponse(nil, d.Direct(), d.Status, headers))
}

// appendResponse appends to dst the CheckResponse that passes the request
// on with headers added to the response, or, when direct, answers it with
// httpStatus and headers. A nil dst is allocated at the exact size.
func appendResponse(dst []byte, direct bool, httpStatus int, headers []policy.Header) []byte {
	code := codes.OK
	bodyField := protowire.Number(fieldResponseOK)
	headersField := protowire.Number(fieldOKResponseHeadersToAdd)
	if direct {
		code = codes.PermissionDenied
		bodyField = fieldResponseDenied
		headersField = fieldDeniedHeaders
	}
	statusLen := 0
	if code != codes.OK {
		statusLen = protowire.SizeTag(fieldStatusCode) + protowire.SizeVarint(uint64(code))
	}
	bodyLen, httpStatusLen := 0, 0
	if direct {
		httpStatusLen = protowire.SizeTag(fieldHTTPStatusCode) + protowire.SizeVarint(uint64(httpStatus))
		bodyLen = protowire.SizeTag(fieldDeniedStatus) + protowire.SizeBytes(httpStatusLen)
	}
	for i := range headers {
		bodyLen += protowire.SizeTag(headersField) + protowire.SizeBytes(headerOptionLen(&headers[i]))
	}
	if dst == nil {
		dst = make([]byte, 0, protowire.SizeTag(fieldResponseStatus)+protowire.SizeBytes(statusLen)+
			protowire.SizeTag(bodyField)+protowire.SizeBytes(bodyLen))
	}

	dst = protowire.AppendTag(dst, fieldResponseStatus, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(statusLen))
	if code != codes.OK {
		dst = protowire.AppendTag(dst, fieldStatusCode, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(code))
	}
	dst = protowire.AppendTag(dst, bodyField, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(bodyLen))
	if direct {
		dst = protowire.AppendTag(dst, fieldDeniedStatus, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(httpStatusLen))
		dst = protowire.AppendTag(dst, fieldHTTPStatusCode, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(httpStatus))
	}
	for i := range headers {
		h := &headers[i]
		dst = protowire.AppendTag(dst, headersField, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(headerOptionLen(h)))
		dst = protowire.AppendTag(dst, fieldOptionHeader, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(headerValueLen(h)))
		if h.Name != "" {
			dst = protowire.AppendTag(dst, fieldHeaderValueKey, protowire.BytesType)
			dst = protowire.AppendString(dst, h.Name)
		}
		if h.Value != "" {
			dst = protowire.AppendTag(dst, fieldHeaderValueValue, protowire.BytesType)
			dst = protowire.AppendString(dst, h.Value)
		}
		if a := appendAction(h); a != 0 {
			dst = protowire.AppendTag(dst, fieldOptionAppendAction, protowire.VarintType)
			dst = protowire.AppendVarint(dst, uint64(a))
		}
	}
	return dst
}

// appendAction is the HeaderValueOption.append_action headerOptions sets.
func appendAction(h *policy.Header) corev3.HeaderValueOption_HeaderAppendAction {
	if h.Append {
		return corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	}
	return corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
}

// headerValueLen is the size of the HeaderValue {key, value}.
func headerValueLen(h *policy.Header) int {
	n := 0
	if h.Name != "" {
		n += protowire.SizeTag(fieldHeaderValueKey) + protowire.SizeBytes(len(h.Name))
	}
	if h.Value != "" {
		n += protowire.SizeTag(fieldHeaderValueValue) + protowire.SizeBytes(len(h.Value))
	}
	return n
}

// headerOptionLen is the size of the HeaderValueOption {header, append_action}.
func headerOptionLen(h *policy.Header) int {
	n := protowire.SizeTag(fieldOptionHeader) + protowire.SizeBytes(headerValueLen(h))
	if a := appendAction(h); a != 0 {
		n += protowire.SizeTag(fieldOptionAppendAction) + protowire.SizeVarint(uint64(a))
	}
	return n
}

// fixedAnswers holds, for the engine in force, the encoded answer of each
// decision whose answer depends only on its policy ([policy.Decision.FixedAnswer]):
// a request without Origin above all, the most common request there is,
// but also an origin not allowed and a rejected preflight. Each is encoded
// the first time it is answered, and then shared, so that answering it
// costs no allocation. A reload brings a new engine and so a new, empty
// set: policies of the same name may answer differently.
type fixedAnswers struct {
	mu  sync.Mutex // held to add
	cur atomic.Pointer[fixedAnswerSet]
}

type fixedAnswerSet struct {
	engine  *policy.Engine
	answers map[fixedAnswerKey]*wireResponse // never modified once stored
}

type fixedAnswerKey struct {
	policy  string
	kind    policy.Kind
	grouped bool
}

// maxFixedAnswers bounds the answers kept per engine (each set is copied
// to add one): beyond, answers are encoded per request, as others are.
const maxFixedAnswers = 4096

// answer returns the encoded answer to the plain decision d, decided by e:
// shared when d's answer is fixed, encoded for this request otherwise.
func (f *fixedAnswers) answer(d *policy.Decision, e *policy.Engine) *wireResponse {
	if d.ReportOnly {
		return wireOKNoHeaders
	}
	if !d.FixedAnswer() || d.Policy == "" {
		return encodeDecision(d)
	}
	key := fixedAnswerKey{policy: d.Policy, kind: d.Kind, grouped: d.Group != ""}
	if set := f.cur.Load(); set != nil && set.engine == e {
		if r, ok := set.answers[key]; ok {
			return r
		}
	}
	r := encodeDecision(d)
	f.mu.Lock()
	defer f.mu.Unlock()
	set := f.cur.Load()
	if set == nil || set.engine != e {
		set = &fixedAnswerSet{engine: e}
	}
	if len(set.answers) >= maxFixedAnswers {
		return r
	}
	next := &fixedAnswerSet{engine: e, answers: make(map[fixedAnswerKey]*wireResponse, len(set.answers)+1)}
	maps.Copy(next.answers, set.answers)
	next.answers[key] = r
	f.cur.Store(next)
	return r
}
