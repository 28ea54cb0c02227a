package authorizer

import (
	"bufio"
	"bytes"
	"context"
	"net/http"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/corsauthz/corsauthz/policy"
)

// ReadHTTPAnswer reads raw, an HTTP authorizer's answer as bytes, the way
// the client configured as cfg reads one from its connection (for the
// fuzz test, which cannot open a socket per input at speed).
func ReadHTTPAnswer(cfg policy.Authorizer, raw []byte) *Answer {
	c, err := newHTTPClient(cfg)
	if err != nil {
		return failed(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		return failed(err)
	}
	defer resp.Body.Close()
	return c.readAnswer(context.Background(), resp)
}

// AnswerOfCheck reads a gRPC authorizer's CheckResponse as the client does.
func AnswerOfCheck(resp *authv3.CheckResponse) *Answer { return answerOfCheck(resp) }
