package xdsconfig

import (
	"crypto/sha256"
	"encoding/hex"

	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
)

// PublishRaw serves content as version without compiling it, as a newer
// corsauthz might serve a configuration this client cannot compile.
func (p *Publisher) PublishRaw(version, source string, content []byte) error {
	value, err := proto.MarshalOptions{Deterministic: true}.Marshal(&corsauthzv1.Configuration{Version: version, Source: source, Content: content})
	if err != nil {
		return err
	}
	p.publish(version, func() ([]byte, error) { return value, nil })
	return nil
}

// PublishedVersion is the version Publish serves e as: the SHA-256 of its
// canonical form, the hash a gateway's engine has.
func PublishedVersion(e *policy.Engine) string {
	content, err := e.Canonical()
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:])
}
