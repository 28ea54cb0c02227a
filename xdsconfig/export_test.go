package xdsconfig

import "context"

// PublishRaw serves content as version without compiling it, as a newer
// corsauthz might serve a configuration this client cannot compile.
func (p *Publisher) PublishRaw(version, source string, content []byte) error {
	return p.publish(context.Background(), version, source, content)
}
