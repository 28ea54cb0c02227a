package probe

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
)

func TestProbe(t *testing.T) {
	files, _ := filepath.Glob("testdata/*")
	for _, f := range files {
		_, warns, err := policy.LoadFile(f)
		fmt.Printf("== %s\n", f)
		for _, fe := range policy.FieldErrors(err) {
			fmt.Printf("\t\t%q,\n", fe.Error())
		}
		for _, w := range warns {
			fmt.Printf("W\t\t%q,\n", w.Error())
		}
	}
}
