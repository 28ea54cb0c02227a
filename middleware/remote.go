package middleware

import (
	"context"
	"fmt"
	"net/http"

	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
)

func (m *Middleware) serveRemote(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	req := m.request(r)
	ctx, cancel := context.WithTimeout(r.Context(), m.timeout)
	resp, err := m.decisions.Decide(ctx, &corsauthzv1.DecideRequest{
		Method:                             req.Method,
		Host:                               req.Host,
		Path:                               req.Path,
		Policy:                             req.Policy,
		Origin:                             req.Origin,
		OriginPresent:                      req.OriginPresent,
		AccessControlRequestMethod:         req.RequestMethod,
		AccessControlRequestHeaders:        req.RequestHeaders,
		AccessControlRequestPrivateNetwork: req.RequestPrivateNetwork,
		OmitReasons:                        true,
	})
	cancel()
	if err != nil {
		m.failClosed(w, r, err)
		return nil
	}
	headers := make([]policy.Header, 0, len(resp.GetHeaders()))
	for _, h := range resp.GetHeaders() {
		headers = append(headers, policy.Header{
			Name:   h.GetName(),
			Value:  h.GetValue(),
			Append: h.GetAction() == corsauthzv1.HeaderAction_HEADER_ACTION_APPEND,
		})
	}
	switch resp.GetAction() {
	case corsauthzv1.Action_ACTION_RESPOND:
		status := int(resp.GetHttpStatus())
		if status < 200 || status > 599 {
			m.failClosed(w, r, fmt.Errorf("Decide answered ACTION_RESPOND with HTTP status %d", status))
			return nil
		}
		respond(w, status, headers)
		return nil
	case corsauthzv1.Action_ACTION_CONTINUE:
		cw := newCORSWriter(w)
		cw.remote = headers
		return cw.serve(r, next)
	default:
		m.failClosed(w, r, fmt.Errorf("Decide answered an action this middleware does not know (%v)", resp.GetAction()))
		return nil
	}
}
