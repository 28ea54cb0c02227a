package xdsconfig

import (
	"sync"

	"google.golang.org/protobuf/types/known/anypb"
)

// sharedCache holds the version the Publisher serves, and the streams
// waiting for a version they have not been sent: one resource, one
// version, encoded once and shared by every stream.
//
// go-control-plane's snapshot cache built a new cached resource for each
// response, and so marshalled the resource once per stream: 3,000 streams
// and a 1 MB configuration made 3 GB of garbage on every publish, and a
// stream that did not read held its own copy. Here each response is a
// small DiscoveryResponse pointing at the version's one encoded
// Configuration, and the stream sends those bytes as they are (see
// wireForm).
//
// Whether a stream gets a response depends only on what it was sent, never
// on the version its request names: a stream is sent the current version
// once, when it subscribes or when that version is published, and never
// again. An ACK naming a stale or unknown version, a NACK, or the same ACK
// repeated buys nothing; a gateway that needs the configuration again
// opens a new stream.
type sharedCache struct {
	mu      sync.Mutex
	current *sharedVersion // nil before the first publish
	watches map[*sharedWatch]struct{}
}

// sharedVersion is a published version: its id and its encoded resource.
//
// The resource is encoded when a stream first sends it, and dropped when
// no stream is open (release): a service no gateway subscribes to keeps no
// copy of its configuration for them (about 2.5 MiB at the documented
// caps), only what encodes it (the engine in force, which it keeps anyway).
type sharedVersion struct {
	id     string
	encode func() ([]byte, error) // the encoded Configuration

	mu  sync.Mutex
	res *anypb.Any // nil until a stream needs it, and after release
}

// sharedWatch is a stream waiting for a version it has not been sent.
type sharedWatch struct {
	ch   chan *sharedVersion
	sent string // the version the stream was last sent ("" for none)
}

func newSharedCache() *sharedCache {
	return &sharedCache{watches: map[*sharedWatch]struct{}{}}
}

func newSharedVersion(id string, encode func() ([]byte, error)) *sharedVersion {
	return &sharedVersion{id: id, encode: encode}
}

// resource is the encoded resource, encoded now if it is not yet.
func (v *sharedVersion) resource() (*anypb.Any, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.res == nil {
		value, err := v.encode()
		if err != nil {
			return nil, err
		}
		v.res = &anypb.Any{TypeUrl: TypeURL, Value: value}
	}
	return v.res, nil
}

// release drops the encoded resource; the responses already made keep
// theirs, and the next stream to send it encodes it again.
func (v *sharedVersion) release() {
	v.mu.Lock()
	v.res = nil
	v.mu.Unlock()
}

// watch gives ch (which has room for one) the current version at once when
// it is not sent, the version the stream was last sent, and otherwise the
// next version published. cancel stops waiting.
func (c *sharedCache) watch(sent string, ch chan *sharedVersion) (cancel func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.current; v != nil && v.id != sent {
		ch <- v
		return func() {}
	}
	w := &sharedWatch{ch: ch, sent: sent}
	c.watches[w] = struct{}{}
	return func() {
		c.mu.Lock()
		delete(c.watches, w)
		c.mu.Unlock()
	}
}

// set makes v the current version and hands it to every stream waiting for
// it. It never waits for a stream: each watch's channel has room for its
// one version.
func (c *sharedCache) set(v *sharedVersion) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current != nil {
		c.current.release()
	}
	c.current = v
	for w := range c.watches {
		if w.sent == v.id {
			continue
		}
		select {
		case w.ch <- v:
			delete(c.watches, w)
		default:
		}
	}
}

// release drops the current version's encoded resource: no stream is
// open.
func (c *sharedCache) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current != nil {
		c.current.release()
	}
}

// waiting is how many streams wait for a new version.
func (c *sharedCache) waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.watches)
}
