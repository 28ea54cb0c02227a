package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ghzVersion is the ghz release the figures are taken with.
const ghzVersion = "v0.120.0"

// findGhz returns the ghz binary: the one given, else ghz in the directory
// go install installs to, else one installed there with go install.
func findGhz(ctx context.Context, given string, logf func(string, ...any)) (string, error) {
	if given != "" {
		return given, nil
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOBIN GOPATH: %w", err)
	}
	bin := filepath.Join(installDir(string(out)), "ghz")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	logf("installing ghz %s with go install", ghzVersion)
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/bojand/ghz/cmd/ghz@"+ghzVersion)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install ghz: %w", err)
	}
	return bin, nil
}

// installDir is where go install puts binaries, from the output of
// go env GOBIN GOPATH (one line each): GOBIN when set, else the bin
// directory of GOPATH's first entry.
func installDir(goEnv string) string {
	gobin, gopath, _ := strings.Cut(goEnv, "\n")
	if gobin = strings.TrimSpace(gobin); gobin != "" {
		return gobin
	}
	gopath = strings.TrimSpace(gopath)
	if i := strings.IndexByte(gopath, os.PathListSeparator); i >= 0 {
		gopath = gopath[:i]
	}
	return filepath.Join(gopath, "bin")
}

// ghzReport is the part of ghz's JSON output (-O json) that is read.
type ghzReport struct {
	Count          uint64         `json:"count"`
	Total          time.Duration  `json:"total"`
	Average        time.Duration  `json:"average"`
	RPS            float64        `json:"rps"`
	ErrorDist      map[string]int `json:"errorDistribution"`
	StatusCodeDist map[string]int `json:"statusCodeDistribution"`
	Latencies      []struct {
		Percentage int           `json:"percentage"`
		Latency    time.Duration `json:"latency"`
	} `json:"latencyDistribution"`
}

func (r *ghzReport) percentile(p int) time.Duration {
	for _, l := range r.Latencies {
		if l.Percentage == p {
			return l.Latency
		}
	}
	return 0
}

func parseGhzReport(data []byte) (*ghzReport, error) {
	var r ghzReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("ghz output: %w", err)
	}
	if r.Count == 0 {
		return nil, errors.New("ghz output: no calls made")
	}
	if r.percentile(50) == 0 || r.percentile(99) == 0 {
		return nil, errors.New("ghz output: no p50 or p99 latency")
	}
	return &r, nil
}

// load is one ghz run's settings.
type load struct {
	ghz         string
	protoset    string
	dataFile    string
	addr        string
	n, c, conns int
}

// runGhz drives addr with ghz and returns its report. Every call must be
// answered OK: a gRPC error would make the figures meaningless.
func runGhz(ctx context.Context, l load) (*ghzReport, error) {
	args := []string{
		"--insecure",
		"--protoset", l.protoset,
		"--call", "envoy.service.auth.v3.Authorization/Check",
		"-D", l.dataFile,
		"--disable-template-functions", "--disable-template-data",
		"-c", strconv.Itoa(l.c),
		"-n", strconv.Itoa(l.n),
		"--connections", strconv.Itoa(l.conns),
		"-O", "json",
		l.addr,
	}
	cmd := exec.CommandContext(ctx, l.ghz, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ghz %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	r, err := parseGhzReport(stdout.Bytes())
	if err != nil {
		return nil, err
	}
	if len(r.ErrorDist) > 0 || r.StatusCodeDist["OK"] != int(r.Count) {
		return nil, fmt.Errorf("ghz against %s: not every call was OK: %v %v", l.addr, r.StatusCodeDist, r.ErrorDist)
	}
	return r, nil
}
