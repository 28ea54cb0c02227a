package xdsconfig

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/corsauthz/corsauthz/policy"
)

// PublishRaw serves content as version without compiling it, as a newer
// corsauthz might serve a configuration this client cannot compile.
func (p *Publisher) PublishRaw(version, source string, content []byte) error {
	return p.publish(context.Background(), version, source, content)
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
