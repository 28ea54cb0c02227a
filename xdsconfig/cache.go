package xdsconfig

import (
	"errors"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// sharedCache is the Publisher's configuration watcher (the part of
// go-control-plane's snapshot cache the state-of-the-world server uses):
// one resource, one version, encoded once when it is published and shared
// by every stream.
//
// go-control-plane's snapshot cache builds a new cached resource for each
// response, and so marshals the resource once per stream: 3,000 streams
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

// sharedVersion is a published version: its encoded resource, and the
// returned-resources map every response of it carries (read-only).
//
// The resource is encoded when a stream first needs it, and dropped when no
// stream is open (release): a service no gateway subscribes to keeps no
// copy of its configuration for them (about 2.5 MiB at the documented
// caps), only what encodes it (the engine in force, which it keeps anyway).
type sharedVersion struct {
	id       string
	returned map[string]string
	encode   func() ([]byte, error) // the encoded Configuration

	mu  sync.Mutex
	res *anypb.Any // nil until a stream needs it, and after release
}

func newSharedVersion(id string, encode func() ([]byte, error)) *sharedVersion {
	return &sharedVersion{
		id:       id,
		encode:   encode,
		returned: map[string]string{ResourceName: id},
	}
}

// sharedWatch is a stream waiting for a version it has not been sent.
type sharedWatch struct {
	req  *discoveryv3.DiscoveryRequest
	ch   chan cachev3.Response
	sent string // the version the stream was last sent ("" for none)
}

var _ cachev3.ConfigWatcher = (*sharedCache)(nil)

func newSharedCache() *sharedCache {
	return &sharedCache{watches: map[*sharedWatch]struct{}{}}
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
// theirs, and the next stream to need it encodes it again.
func (v *sharedVersion) release() {
	v.mu.Lock()
	v.res = nil
	v.mu.Unlock()
}

// response is v's response to req: a DiscoveryResponse of its own (the
// server writes the stream's nonce into it) around the shared resource;
// nil when the resource cannot be encoded (the stream then waits for the
// next version, as it would for one not published).
func (v *sharedVersion) response(req *discoveryv3.DiscoveryRequest) cachev3.Response {
	res, err := v.resource()
	if err != nil {
		return nil
	}
	return &cachev3.PassthroughResponse{
		Request: req,
		DiscoveryResponse: &discoveryv3.DiscoveryResponse{
			VersionInfo: v.id,
			Resources:   []*anypb.Any{res},
			TypeUrl:     TypeURL,
		},
		ReturnedResources: v.returned,
	}
}

// CreateWatch answers at once when the stream has not been sent the
// current version, and otherwise waits for the next one. The resource
// names of the request are not read: there is one resource, and the
// Publisher refuses every other type.
func (c *sharedCache) CreateWatch(req *discoveryv3.DiscoveryRequest, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	sent := sub.ReturnedResources()[ResourceName]
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.current; v != nil && v.id != sent {
		if r := v.response(req); r != nil {
			select {
			case ch <- r:
			default:
				// The server gives each watch a new channel with room for
				// one response: never full here.
			}
			return func() {}, nil
		}
	}
	w := &sharedWatch{req: req, ch: ch, sent: sent}
	c.watches[w] = struct{}{}
	return func() {
		c.mu.Lock()
		delete(c.watches, w)
		c.mu.Unlock()
	}, nil
}

// errNoDelta refuses the incremental protocol, which the Publisher does
// not serve.
var errNoDelta = errors.New("corsauthz serves its configuration over state-of-the-world xDS only")

func (c *sharedCache) CreateDeltaWatch(*discoveryv3.DeltaDiscoveryRequest, cachev3.Subscription, chan cachev3.DeltaResponse) (func(), error) {
	return nil, errNoDelta
}

// set makes v the current version and answers every stream waiting for
// it. It never waits for a stream: each watch's channel has room for its
// one response.
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
		r := v.response(w.req)
		if r == nil {
			return
		}
		select {
		case w.ch <- r:
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
