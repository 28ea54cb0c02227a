package probe

import (
	"fmt"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
)

func TestProbe3(t *testing.T) {
	for _, y := range []string{
		"policies:\n  - name: api\n    allowed_origins:\n    - https://xn--a.example\n    - https://a%20b.example\n    - \"https://a b.example\"\n    - https://EXAMPLE.COM:443\n    - https://[::1]x\n    - https://[fe80::1%25eth0]\n    - https://[::ffff:127.0.0.1]\n    - https://[::1]:443\n    - https://*.localhost\n    - HTTP://LOCALHOST:80\n    - https://Bücher.example\n    - https://\n    - ://a.example\n    - https://a.example:\n    - chrome-extension://abcdefgh\n    - https://-a.example\n    - https://a_b.example\n    - NULL\n    - \" https://a.example\"\n",
		"policies:\n  - name: api\n    match:\n      hosts: [\"*.api.example.com\", API.example.com, \"api.example.com:8443\", \"a.*.example.com\", \"https://x\", \"api.example.com:0\", \"[::1]:8080\", \"*.api.example.com:80\", \"\"]\n      path_prefixes: [/v1/, v2, \"/x?y\"]\n    allowed_origins: [https://a.example]\n",
		"policies:\n  - name: api\n    allowed_origins: [https://a.example]\n    allowed_methods: [get, patch, Patch, PATCH, PATCH]\n    allowed_headers: [\"*\", X-A, x-a]\n    exposed_headers: [\"*\", X-A, x-a]\n",
	} {
		_, warns, err := policy.Load("in.yaml", []byte(y))
		fmt.Printf("== %q\n", y)
		for _, fe := range policy.FieldErrors(err) {
			fmt.Printf("E %q\n", fe.Error())
		}
		for _, w := range warns {
			fmt.Printf("W %q\n", w.Error())
		}
	}
}
