package httpauthz_test

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/httpauthz"
)

// FuzzRequest reads arbitrary bytes as a gateway's check request, as
// net/http parses them, and answers it: whatever the bytes, the answer is
// one of the statuses of docs/nginx.md, every header on one line, and a
// refusal's body one line of text. Seeded with the protocol table.
func FuzzRequest(f *testing.F) {
	for _, tt := range protocolCases {
		f.Add(request(tt.method, tt.target, tt.headers...), tt.prefix)
	}
	f.Add("GET / HTTP/1.0\r\n\r\n", "")
	f.Add("OPTIONS * HTTP/1.1\r\nHost: x\r\nX-Forwarded-Uri: /\r\n\r\n", "/p")
	core := newCore(f, loadEngine(f), nil)
	handlers := map[string]*httpauthz.Handler{}
	f.Fuzz(func(t *testing.T, raw, prefix string) {
		if !strings.HasPrefix(prefix, "/") {
			prefix = ""
		}
		h := handlers[prefix]
		if h == nil {
			var err error
			if h, err = httpauthz.New(core, httpauthz.Options{PathPrefix: prefix}); err != nil {
				t.Fatal(err)
			}
			if len(handlers) < 100 {
				handlers[prefix] = h
			}
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http answers 400 itself
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 204, 403:
			if rec.Body.Len() != 0 {
				t.Errorf("%d with a body %q", rec.Code, rec.Body)
			}
		case 400, 431, 503:
			body := rec.Body.String()
			if !strings.HasSuffix(body, "\n") || strings.Count(body, "\n") != 1 || len(body) > 1024 {
				t.Errorf("%d with body %q, want one short line", rec.Code, body)
			}
		default:
			t.Errorf("status %d", rec.Code)
		}
		for name, vs := range rec.Header() {
			if len(vs) != 1 {
				t.Errorf("%s on %d lines", name, len(vs))
			}
		}
	})
}
