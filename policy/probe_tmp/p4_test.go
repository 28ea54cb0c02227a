package probe

import (
	"fmt"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
)

func TestProbe4(t *testing.T) {
	_, _, err := policy.LoadFile("/tmp/probe/k.yaml")
	for _, fe := range policy.FieldErrors(err) {
		fmt.Printf("%q\n", fe.Error())
	}
}
