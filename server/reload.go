package server

import (
	"context"
	"log/slog"
	"strings"

	"github.com/corsauthz/corsauthz/internal/configfile"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// Reload loads data, the content of the configuration file source, and
// puts it in force when it is valid: every Check that starts after Reload
// returns decides with it, and every Check in flight finishes with the
// configuration it started with (the holder is swapped atomically, so each
// call sees exactly one of the two).
//
// An invalid configuration changes nothing: the one in force stays, each
// problem (the first maxLoggedProblems) is logged as `corsauthz validate` prints it
// (FILE:LINE:COL: FIELD.PATH: message), corsauthz_config_reloads_total
// {result="failure"} counts it and corsauthz_config_last_reload_successful
// drops to 0. Reload then returns the load error (the joined
// *policy.FieldErrors).
//
// Content identical to the configuration in force (same SHA-256) is not a
// reload: Reload logs that and returns nil without counting a reload (but
// corsauthz_config_last_reload_successful goes back to 1 when a failed
// reload had set it to 0: the file and the configuration in force agree).
// Reload is safe for concurrent use; calls are serialised.
func (s *Server) Reload(ctx context.Context, source string, data []byte) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()

	old := s.engines.Load()
	hash := configfile.Hash(data)
	if old != nil && old.Hash() == hash {
		s.logger.LogAttrs(ctx, slog.LevelInfo, "configuration unchanged: nothing to reload",
			slog.String("config", source), slog.String("config_hash", hash))
		s.metrics.configMatches() // the file holds what is in force, even after a failed reload
		return nil
	}
	e, warnings, err := policy.Load(source, data)
	if err != nil {
		s.reloadFailed(ctx, source, hash, old, err)
		return err
	}
	for _, w := range warnings {
		s.logger.LogAttrs(ctx, slog.LevelWarn, "configuration warning",
			slog.String("config", source), slog.String("warning", w.Error()))
	}
	if err := s.core.Sync(e); err != nil {
		s.reloadFailed(ctx, source, hash, old, err)
		return err
	}
	s.engines.Store(e)
	s.core.InForce(e)
	s.publishConfig(ctx, e) // xds.go
	s.metrics.reloaded(e, true)
	s.syncHealth()
	attrs := []slog.Attr{
		slog.String("config", source),
		slog.String("config_hash", hash),
		slog.String("policies", strings.Join(e.PolicyNames(), ",")),
	}
	if old != nil {
		attrs = append(attrs, slog.String("previous_hash", old.Hash()))
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "configuration reloaded", attrs...)
	return nil
}

// ReloadFailed records a reload that failed before there was content to
// load, such as a configuration file that could not be read: it is logged
// and counted as a failed reload, and the configuration in force stays.
func (s *Server) ReloadFailed(ctx context.Context, source string, err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.reloadFailed(ctx, source, "", s.engines.Load(), err)
}

func (s *Server) reloadFailed(ctx context.Context, source, hash string, old *policy.Engine, err error) {
	s.metrics.reloaded(nil, false)
	problems := policy.FieldErrors(err)
	attrs := []slog.Attr{
		slog.String("config", source),
		slog.Int("problems", max(len(problems), 1)),
	}
	if hash != "" {
		attrs = append(attrs, slog.String("rejected_hash", hash))
	}
	if old != nil {
		attrs = append(attrs, slog.String("config_hash", old.Hash()))
	}
	if len(problems) == 0 {
		attrs = append(attrs, slog.String("error", limits.Cut(err.Error())))
	}
	s.logger.LogAttrs(ctx, slog.LevelError, "configuration reload failed: keeping the configuration in force", attrs...)
	for i, fe := range problems {
		if i == maxLoggedProblems {
			s.logger.LogAttrs(ctx, slog.LevelError, "invalid configuration: more problems not logged (corsauthz validate lists them all)",
				slog.String("config", source), slog.Int("not_logged", len(problems)-i))
			break
		}
		s.logger.LogAttrs(ctx, slog.LevelError, "invalid configuration",
			slog.String("config", source), slog.String("error", fe.Error()))
	}
}

// maxLoggedProblems bounds the problems a refused reload logs, one line
// each: a file can hold a hundred thousand.
const maxLoggedProblems = 100
