package probe

import (
	"fmt"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
)

func TestProbe2(t *testing.T) {
	for _, y := range []string{
		"policies:\n  - name: api\n    allowed_origins: [https://a.example.com\n  - name: files\n",
		"policies:\n  - name: api\n   allowed_origins: x\n",
		"policies:\n\t- name: api\n",
		"policies:\n  - name: \"api\n",
		"a: b: c\n",
		"policies:\n  - name: api\n    allowed_origins: [https://a.example.com]\n  foo\n",
		"\x00",
		"- a\n- b\n",
		"{\"policies\": [{\"name\": \"api\", \"allowed_origins\": [\"https://a.example.com\"],}]}",
		"%YAML 1.1\n---\n",
		"---\n---\n",
		"policies: []\n",
		"policies:\n  - name: api\n    allowed_origins: [https://127.000.000.001, https://1.2.3, https://0x7f.0.0.1, https://2130706433, https://example.123, https://example.0x1f, https://1.2.3.4.5]\n",
		"policies:\n  - name: api\n    allowed_origins: [https://xn--a.example, https://a%20b.example, \"https://a b.example\", https://EXAMPLE.COM:443, https://[::1]x, https://[fe80::1%25eth0]]\n",
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
