package extauthz_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/extauthz"
	"github.com/corsauthz/corsauthz/internal/limits"
	th "github.com/corsauthz/corsauthz/internal/testharness"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The fast path's CheckRequest reader must agree with proto.Unmarshal on
// every input. The rule the tests hold it to, for any bytes:
//
//   - it fails exactly when proto.Unmarshal fails (so it never decides on
//     a request the standard codec refuses, and never refuses one the
//     standard codec reads);
//   - when both succeed, it reads the request Check reads from the
//     unmarshalled message: the same policy.Request (method, host, path,
//     cors_policy, Origin and the Access-Control-Request-* headers) and the
//     same refusal message, if any.

// assertWireAgrees checks the rule for data.
func assertWireAgrees(t *testing.T, data []byte) (decoded bool) {
	t.Helper()
	msg := &authv3.CheckRequest{}
	protoErr := proto.Unmarshal(data, msg)
	got, gotProblem, _, wireErr := extauthz.DecodeWire(data)
	if wireErr == nil && strings.HasSuffix(gotProblem, "entries, the limit") {
		// Refused at the first header entry past the limit, unread
		// beyond (docs/operations-and-limits.md): whatever follows, proto.Unmarshal may
		// fail on it, and it would count the map's distinct keys.
		return false
	}
	if (protoErr == nil) != (wireErr == nil) {
		t.Fatalf("proto.Unmarshal error: %v\nfast path error:     %v\ninput: %q", protoErr, wireErr, data)
	}
	if protoErr != nil {
		return false
	}
	want, wantProblem := extauthz.ReadRequest(msg)
	if gotProblem != wantProblem {
		t.Fatalf("refusal %q, want %q\ninput: %q", gotProblem, wantProblem, data)
	}
	if wantProblem == "" && got != want {
		t.Fatalf("request\n%+v\nwant\n%+v\ninput: %q", got, want, data)
	}
	return true
}

// wireSeeds are serialized requests: the table tests' and a browser's.
func wireSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	var seeds [][]byte
	add := func(m proto.Message) {
		data, err := proto.Marshal(m)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	for _, tc := range checkCases {
		add(tc.req)
	}
	for _, tc := range checkErrorCases {
		if proto.Size(tc.req) < 4096 {
			add(tc.req)
		}
	}
	add(browserPreflight())
	return seeds
}

// browserPreflight is a preflight with everything Envoy sends for Chrome.
func browserPreflight() *authv3.CheckRequest {
	req := th.CheckRequest("OPTIONS", "api.example.com", "/v1/orders/42", th.Hdrs{
		":authority":                     "api.example.com",
		":method":                        "OPTIONS",
		":path":                          "/v1/orders/42",
		":scheme":                        "https",
		"accept":                         "*/*",
		"accept-language":                "en-US,en;q=0.9",
		"access-control-request-headers": "authorization,content-type",
		"access-control-request-method":  "PUT",
		"origin":                         th.App,
		"referer":                        "https://app.example.com/",
		"sec-fetch-mode":                 "cors",
		"user-agent":                     "Mozilla/5.0 (X11; Linux x86_64) Chrome/139.0.0.0",
		"x-request-id":                   "0f6f3b52-1c4e-4d0a-9a56-6f1c2b7d9e01",
	}, "api")
	req.Attributes.MetadataContext = nil
	req.Attributes.Request.Http.Scheme = "https"
	req.Attributes.Request.Http.Protocol = "HTTP/2"
	req.Attributes.Request.Http.Id = "7195833436459834715"
	return req
}

func FuzzWireDecode(f *testing.F) {
	for _, seed := range wireSeeds(f) {
		f.Add(seed)
		// And the seed cut short, and with a byte flipped.
		if len(seed) > 3 {
			f.Add(seed[:len(seed)/2])
			flipped := bytes.Clone(seed)
			flipped[len(seed)/3] ^= 0x80
			f.Add(flipped)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		assertWireAgrees(t, data)
	})
}

// FuzzWireDecodeStructured builds a valid-looking CheckRequest from the
// fuzzer's bytes: fields in any order, repeated, merged, with map keys
// read twice, unknown fields, known fields with another wire type, and now
// and then an invalid string or a cut.
func FuzzWireDecodeStructured(f *testing.F) {
	for i := range 8 {
		f.Add(uint64(i), uint64(i*7919))
	}
	f.Fuzz(func(t *testing.T, s1, s2 uint64) {
		g := &wireGen{r: rand.New(rand.NewPCG(s1, s2))}
		assertWireAgrees(t, g.checkRequest())
	})
}

// TestWireDecodeRandom runs the structured generator over a few thousand
// seeds: fast enough for every `go test`, and it checks that the
// generator produces mostly readable requests that reach every header.
func TestWireDecodeRandom(t *testing.T) {
	t.Parallel()
	n := 3000
	if testing.Short() {
		n = 300
	}
	var decoded, withOrigin, withACRH, withPolicy int
	for i := range n {
		g := &wireGen{r: rand.New(rand.NewPCG(uint64(i), 42))}
		data := g.checkRequest()
		if !assertWireAgrees(t, data) {
			continue
		}
		decoded++
		r, problem, _, _ := extauthz.DecodeWire(data)
		if problem != "" {
			continue
		}
		if r.Origin != "" {
			withOrigin++
		}
		if r.RequestHeaders != "" {
			withACRH++
		}
		if r.Policy != "" {
			withPolicy++
		}
	}
	if decoded < n/3 || withOrigin < n/10 || withACRH < n/20 || withPolicy < n/20 {
		t.Errorf("of %d generated requests, %d decoded, %d with Origin, %d with Access-Control-Request-Headers, %d with cors_policy: the generator needs tuning",
			n, decoded, withOrigin, withACRH, withPolicy)
	}
}

func TestWireDecodeSeeds(t *testing.T) {
	t.Parallel()
	for _, seed := range wireSeeds(t) {
		if !assertWireAgrees(t, seed) {
			t.Errorf("seed %q does not decode", seed)
		}
	}
}

// TestWireDecodeEdges covers inputs built by hand: the rules one at a time.
func TestWireDecodeEdges(t *testing.T) {
	t.Parallel()
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	msg := func(num protowire.Number, parts ...[]byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), bytes.Join(parts, nil))
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	entry := func(num protowire.Number, k, v string) []byte { return msg(num, str(1, k), str(2, v)) }
	http := func(parts ...[]byte) []byte { return msg(1, msg(4, msg(2, parts...))) }
	for _, tc := range []struct {
		desc string
		data []byte
	}{
		{"empty", nil},
		{"http present but empty", http()},
		{"method read twice: the last wins", http(str(2, "GET"), str(2, "OPTIONS"))},
		{"method with a varint wire type is an unknown field", http(str(2, "GET"), varint(2, 5))},
		{"origin entry read twice: the last wins", http(entry(3, "origin", th.App), entry(3, "origin", th.Evil))},
		{"map entry value before key", http(msg(3, str(2, th.App), str(1, "origin")))},
		{"map entry key read twice", http(msg(3, str(1, "x"), str(2, th.App), str(1, "origin")))},
		{"map entry without value", http(msg(3, str(1, "origin")))},
		{"map entry with an unknown field", http(msg(3, str(1, "origin"), varint(7, 1), str(2, th.App)))},
		{"upper-case key in headers is another header", http(entry(3, "Origin", th.App))},
		{"http merged from two occurrences", append(http(str(2, "GET"), entry(3, "origin", th.App)), http(str(5, "api.example.com"))...)},
		{"attributes merged", append(msg(1, msg(10, str(1, "cors_policy"), str(2, "api"))), http(str(2, "GET"))...)},
		{"invalid UTF-8 in a value not read", http(entry(3, "user-agent", "\xff"))},
		{"invalid UTF-8 in the method", http(str(2, "G\xffT"))},
		{"invalid UTF-8 in raw_value is fine", http(msg(13, msg(1, str(1, "origin"), str(3, "\xff"))))},
		{"invalid UTF-8 in a peer's address", msg(1, msg(1, msg(1, msg(1, str(2, "\xc0\x80")))))},
		{"unknown group", append(http(str(2, "GET")), 0x0b, 0x08, 0x01, 0x0c)},
		{"unmatched end group", append(http(str(2, "GET")), 0x0c)},
		{"field number 0", append(http(), 0x02, 0x00)},
		{"field number beyond the maximum", append(http(), protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3|2)...)},
		{"reserved wire type", append(http(), 0x0e)},
		{"truncated length", append(http(), 0x0a, 0x05, 0x01)},
		{"overlong varint", append(http(), 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)},
		{"header_map joins repeated headers", http(msg(13, msg(1, str(1, "Origin"), str(2, th.App)), msg(1, str(1, "ORIGIN"), str(3, "x"))))},
		{"headers win over header_map", http(entry(3, "accept", "*/*"), msg(13, msg(1, str(1, "origin"), str(2, th.App))))},
		{"header_map merged from two occurrences", http(msg(13, msg(1, str(1, "origin"), str(2, th.App))), msg(13, msg(1, str(1, "origin"), str(2, th.Evil))))},
		{"a packed list where none is expected", msg(1, msg(4, msg(1, msg(1, varint(1, 5)))))},
		{"timestamp nanos as bytes", msg(1, msg(4, msg(1, str(2, "x"))))},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			assertWireAgrees(t, tc.data)
		})
	}
}

// TestWireDecodeDepth checks the nesting limit: proto.Unmarshal refuses a
// message nested deeper than protowire.DefaultRecursionLimit, counting map
// entries as levels, and so must the fast path, at the same depth.
func TestWireDecodeDepth(t *testing.T) {
	t.Parallel()
	// metadata_context {filter_metadata {key: "a" value: Struct{fields{"a": Value{struct_value: ...}}}}}
	nested := func(levels int, list bool) []byte {
		v := structpb.NewNullValue()
		for range levels {
			if list {
				v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
			} else {
				v = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"a": v}})
			}
		}
		req := th.CheckRequest("GET", "api.example.com", "/", th.Hdrs{"origin": th.App}, "")
		req.Attributes.MetadataContext = metadata(v)
		data, err := proto.MarshalOptions{}.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, list := range []bool{false, true} {
		// Find where proto.Unmarshal starts refusing, then check around it.
		lo, hi := 1, 10000
		for lo < hi {
			mid := (lo + hi) / 2
			if proto.Unmarshal(nested(mid, list), &authv3.CheckRequest{}) != nil {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		if lo >= 10000 {
			t.Fatalf("list=%v: proto.Unmarshal accepts 10000 levels", list)
		}
		for levels := lo - 2; levels <= lo+1; levels++ {
			assertWireAgrees(t, nested(levels, list))
		}
	}
}

func metadata(v *structpb.Value) *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"a": {Fields: map[string]*structpb.Value{"a": v}}}}
}

// TestWireResponse checks that the fast path's answer to each decision is
// the typed path's, serialized byte for byte as proto.Marshal does it.
func TestWireResponse(t *testing.T) {
	t.Parallel()
	e := th.LoadEngine(t, th.Config)
	for _, tc := range checkCases {
		t.Run(tc.desc, func(t *testing.T) {
			r, problem := extauthz.ReadRequest(tc.req)
			if problem != "" {
				t.Fatal(problem)
			}
			d, err := e.Decide(&r)
			if err != nil {
				t.Fatal(err)
			}
			want, err := proto.Marshal(extauthz.CheckResponse(&d))
			if err != nil {
				t.Fatal(err)
			}
			if got := extauthz.EncodeWire(&d); !bytes.Equal(got, want) {
				t.Errorf("fast path answer\n%x\nproto.Marshal\n%x", got, want)
			}
		})
	}
}

// wireGen generates serialized CheckRequests for the differential tests.
type wireGen struct{ r *rand.Rand }

func (g *wireGen) chance(p float64) bool { return g.r.Float64() < p }

// str is a string value from a small set, so that keys collide; now and
// then not UTF-8.
func (g *wireGen) str(choices ...string) string {
	if g.chance(0.02) {
		return "bad\xff"
	}
	return choices[g.r.IntN(len(choices))]
}

var (
	genHeaderKeys = []string{
		"origin", "origin", "origin", "Origin", "access-control-request-method", "access-control-request-method", "ACCESS-CONTROL-REQUEST-METHOD",
		"access-control-request-headers", "access-control-request-headers", "access-control-request-private-network",
		":authority", "user-agent", "x-a", "",
	}
	genHeaderValues = []string{th.App, th.Evil, "null", "PUT", "GET", "content-type,authorization", "true", "", "a, b"}
)

// message joins encoded fields into a message: some repeated, unknown
// ones added, all shuffled, and now and then cut short.
func (g *wireGen) message(fields ...[]byte) []byte {
	// Repeat some, add unknown fields, shuffle.
	for i := range fields {
		if g.chance(0.1) {
			fields = append(fields, fields[i])
		}
	}
	for range g.r.IntN(3) {
		fields = append(fields, g.unknown())
	}
	g.r.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	b := bytes.Join(fields, nil)
	if g.chance(0.01) && len(b) > 0 {
		b = b[:g.r.IntN(len(b))] // cut short
	}
	return b
}

func (g *wireGen) unknown() []byte {
	num := protowire.Number(20 + g.r.IntN(100))
	switch g.r.IntN(5) {
	case 0:
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), g.r.Uint64())
	case 1:
		return protowire.AppendFixed32(protowire.AppendTag(nil, num, protowire.Fixed32Type), g.r.Uint32())
	case 2:
		return protowire.AppendFixed64(protowire.AppendTag(nil, num, protowire.Fixed64Type), g.r.Uint64())
	case 3:
		b := protowire.AppendTag(nil, num, protowire.StartGroupType)
		b = protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.VarintType), 1)
		return protowire.AppendTag(b, num, protowire.EndGroupType)
	}
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), "\xff unknown bytes are not checked")
}

func (g *wireGen) strField(num protowire.Number, s string) []byte {
	if g.chance(0.03) {
		// The wrong wire type: an unknown field.
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), 7)
	}
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
}

func (g *wireGen) msgField(num protowire.Number, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}

func (g *wireGen) mapEntry(num protowire.Number, keys, values []string) []byte {
	var fields [][]byte
	if !g.chance(0.05) {
		fields = append(fields, g.strField(1, g.str(keys...)))
	}
	if !g.chance(0.05) {
		fields = append(fields, g.strField(2, g.str(values...)))
	}
	return g.msgField(num, g.message(fields...))
}

func (g *wireGen) checkRequest() []byte {
	var fields [][]byte
	for range 1 + g.r.IntN(2) {
		fields = append(fields, g.msgField(1, g.attributes()))
	}
	return g.message(fields...)
}

func (g *wireGen) attributes() []byte {
	var fields [][]byte
	if g.chance(0.3) {
		fields = append(fields, g.msgField(1, g.peer()))
	}
	if g.chance(0.3) {
		fields = append(fields, g.msgField(2, g.peer()))
	}
	for range g.r.IntN(3) {
		fields = append(fields, g.msgField(4, g.request()))
	}
	for range g.r.IntN(3) {
		fields = append(fields, g.mapEntry(10, []string{"cors_policy", "other", ""}, []string{"api", "public", "nope", ""}))
	}
	if g.chance(0.1) {
		fields = append(fields, g.msgField(12, g.message(g.strField(1, g.str("api.example.com")))))
	}
	return g.message(fields...)
}

func (g *wireGen) peer() []byte {
	sock := g.message(g.strField(2, g.str("203.0.113.10", "::1")),
		protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), uint64(g.r.IntN(65536))))
	addr := g.message(g.msgField(1, sock))
	return g.message(g.msgField(1, addr), g.mapEntry(3, []string{"app", ""}, []string{"web"}), g.strField(4, g.str("spiffe://x")))
}

func (g *wireGen) request() []byte {
	var fields [][]byte
	if g.chance(0.3) {
		ts := g.message(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1768471200))
		fields = append(fields, g.msgField(1, ts))
	}
	for range g.r.IntN(3) {
		fields = append(fields, g.msgField(2, g.http()))
	}
	return g.message(fields...)
}

func (g *wireGen) http() []byte {
	var fields [][]byte
	add := func(p float64, f func() []byte) {
		for g.chance(p) {
			fields = append(fields, f())
			p /= 3
		}
	}
	add(0.8, func() []byte {
		return g.strField(2, g.str("GET", "OPTIONS", "OPTIONS", "PUT", "", strings.Repeat("A", 65*g.r.IntN(2))))
	})
	add(0.7, func() []byte { return g.strField(4, g.str("/v1/orders", "/", "/public/x?y")) })
	add(0.7, func() []byte {
		return g.strField(5, g.str("api.example.com", "strict.example.com", "API.example.com:443"))
	})
	add(0.3, func() []byte { return g.strField(1, g.str("7195833436459834715")) })
	add(0.3, func() []byte { return g.strField(6, g.str("https")) })
	add(0.2, func() []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), uint64(g.r.IntN(1000)))
	})
	add(0.2, func() []byte { return g.msgField(12, []byte("\xff\xfe raw body")) })
	for range g.r.IntN(8) {
		fields = append(fields, g.mapEntry(3, genHeaderKeys, genHeaderValues))
	}
	if g.chance(0.25) {
		for range 1 + g.r.IntN(2) {
			var hm [][]byte
			for range g.r.IntN(5) {
				var hv [][]byte
				if !g.chance(0.05) {
					hv = append(hv, g.strField(1, g.str(genHeaderKeys...)))
				}
				if g.chance(0.6) {
					hv = append(hv, g.strField(2, g.str(genHeaderValues...)))
				}
				if g.chance(0.4) {
					hv = append(hv, g.msgField(3, []byte(g.str(genHeaderValues...))))
				}
				hm = append(hm, g.msgField(1, g.message(hv...)))
			}
			fields = append(fields, g.msgField(13, g.message(hm...)))
		}
	}
	return g.message(fields...)
}

// TestWireDecodeRepeatedKeys: a headers map with more than MaxHeaderCount
// entries is refused even when its distinct keys are within the limit (on
// an earlier release it was decoded again with proto.Unmarshal, and 520,000 copies of
// one empty entry were decided): the entries are counted as sent.
func TestWireDecodeRepeatedKeys(t *testing.T) {
	t.Parallel()
	var b []byte
	for i := range limits.HeaderCount + 5 {
		k := "origin"
		if i%2 == 0 {
			k = "x-a"
		}
		e := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), k)
		e = protowire.AppendString(protowire.AppendTag(e, 2, protowire.BytesType), th.App)
		b = protowire.AppendBytes(protowire.AppendTag(b, 3, protowire.BytesType), e)
	}
	http := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), b)
	req := protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), http)
	data := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), req)
	_, problem, typed, err := extauthz.DecodeWire(data)
	want := fmt.Sprintf("attributes.request.http.headers has more than %d entries, the limit", limits.HeaderCount)
	if err != nil || typed || problem != want {
		t.Errorf("DecodeWire = problem %q, typed %v, err %v; want problem %q", problem, typed, err, want)
	}
}

// BenchmarkWireDecode compares reading a browser's preflight with the
// fast path and with proto.Unmarshal.
func BenchmarkWireDecode(b *testing.B) {
	data, err := proto.Marshal(browserPreflight())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast_path", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, _, _, err := extauthz.DecodeWire(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			m := &authv3.CheckRequest{}
			if err := proto.Unmarshal(data, m); err != nil {
				b.Fatal(err)
			}
			extauthz.ReadRequest(m)
		}
	})
}
