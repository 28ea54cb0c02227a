// Command loadbench measures what corsauthz costs per Check against the
// cheapest possible ext_authz server, in one run on one machine.
//
//	go run ./cmd/loadbench [-n 30000] [-c 50] [-connections 2] [-rounds 3]
//
// It builds corsauthz (./cmd/corsauthz) and the do-nothing server
// (./cmd/loadbench/nothing: plain grpc-go, default options, the standard
// proto codec decoding the whole CheckRequest, an empty OK), writes a
// configuration of 20 policies with 1,000 exact origins and 100 wildcard
// patterns, starts both on free loopback ports, and drives them in turn
// (A, B, then B, A, ... for -rounds rounds, so that drift cancels) with ghz
// under the same flags and the same requests: a preflight, an actual
// request and a request without Origin, each with every header Chrome
// sends through Envoy. For each server and request sort it reports
// requests per second and p50/p99 latency (from ghz), the server's CPU time
// per Check (utime+stime from /proc/PID/stat around each run, divided by
// the calls made) and its peak RSS (VmHWM), then the ratios corsauthz /
// do-nothing. On a machine with few cores ghz is the bottleneck, so the
// CPU per Check is the figure that counts.
//
// Last, it times compiling a 10,000-origin configuration and compares
// Decide on it with Decide on small ones.
//
// It runs ghz from the directory go install installs to ($GOBIN, else
// $(go env GOPATH)/bin), installing ghz v0.120.0 there when it is
// missing. Everything listens on 127.0.0.1 only.
//
// To find where the time goes and what a change is worth:
//
//	-cpuprofile-dir DIR   CPU profiles of both servers under the load
//	-kinds preflight      only some request sorts
//	-variant NAME=VAR=VAL also measure corsauthz with an environment
//	                      variable set (such as GOGC=100), in the same rounds
//	-variant-bin NAME=BIN also measure another corsauthz binary (such as one
//	                      built from an earlier commit), in the same rounds
//
// With -caps every corsauthz server of the run (-variant and -variant-bin
// ones too) serves a configuration at the documented caps (1,000 policies,
// 50,000 allowed origins) instead, and the report adds their peak RSS and
// RSS while serving against the do-nothing server's, and the time
// policy.Load takes on the file (caps.go). With -chain (the default) each
// -variant and -variant-bin is measured chained too.
//
// With -http it measures the HTTP authorization listener instead, directly
// and through NGINX, with wrk (see http.go):
//
//	go run ./cmd/loadbench -http [-http-duration 4s] [-http-connections 32] [-http-rounds 3]
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

type options struct {
	n, c, conns, rounds, warmup int
	ghz                         string
	workDir                     string
	profileDir                  string
	skipCompile                 bool
	skipLoad                    bool
	variants                    variantFlag
	kinds                       string
	chain                       bool
	// caps runs every corsauthz server with the configuration at the
	// caps (capsConfig) and reports its peak RSS and load time (caps.go).
	caps bool
	// httpMode runs the HTTP authorization benchmarks (http.go) instead.
	httpMode bool
	http     httpOptions
}

// variantFlag collects -variant NAME=VAR=VALUE[,VAR=VALUE...]: more
// corsauthz servers, run with these environment variables added, measured
// in the same rounds (to compare settings such as GOGC).
type variantFlag []variant

type variant struct {
	name string
	env  []string
	bin  string // another corsauthz binary; "" for the one built
	// config is another configuration file; "" for the benchmark's.
	config string
}

func (v *variantFlag) String() string { return fmt.Sprint(*v) }

func (v *variantFlag) Set(s string) error {
	name, env, ok := strings.Cut(s, "=")
	if !ok || name == "" || !strings.Contains(env, "=") {
		return fmt.Errorf("want NAME=VAR=VALUE[,VAR=VALUE...], not %q", s)
	}
	*v = append(*v, variant{name: "corsauthz " + name, env: strings.Split(env, ",")})
	return nil
}

// binFlag collects -variant-bin NAME=PATH: another corsauthz binary
// (built from another commit, say), measured in the same rounds.
type binFlag struct{ v *variantFlag }

func (b binFlag) String() string { return "" }

func (b binFlag) Set(s string) error {
	name, bin, ok := strings.Cut(s, "=")
	if !ok || name == "" || bin == "" {
		return fmt.Errorf("want NAME=PATH, not %q", s)
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	*b.v = append(*b.v, variant{name: "corsauthz " + name, bin: abs})
	return nil
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 30000, "Checks per ghz run")
	flag.IntVar(&o.c, "c", 50, "concurrent ghz workers")
	flag.IntVar(&o.conns, "connections", 2, "HTTP/2 connections ghz spreads its workers over")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds; each runs every request sort against every server")
	flag.IntVar(&o.warmup, "warmup", 5000, "Checks per server and request sort before measuring")
	flag.StringVar(&o.ghz, "ghz", "", "ghz binary (default: ghz in $GOBIN or $(go env GOPATH)/bin, installed if missing)")
	flag.StringVar(&o.workDir, "workdir", "", "directory for binaries, configuration and logs (default: a temporary one, removed at the end)")
	flag.StringVar(&o.profileDir, "cpuprofile-dir", "", "write CPU profiles of both servers (corsauthz.prof, nothing.prof) to this directory")
	flag.BoolVar(&o.skipCompile, "skip-compile", false, "skip the compile and Decide measurements")
	flag.BoolVar(&o.skipLoad, "skip-load", false, "skip the load measurements")
	flag.StringVar(&o.kinds, "kinds", "preflight,actual,no-origin", "request sorts to run, comma-separated")
	flag.Var(&o.variants, "variant", "also measure corsauthz with environment variables added: NAME=VAR=VALUE[,VAR=VALUE...] (repeatable)")
	flag.BoolVar(&o.caps, "caps", false, "run every corsauthz server with a configuration at the caps (1,000 policies, 50,000 origins) and report peak RSS against the do-nothing server and the load time (caps.go)")
	flag.BoolVar(&o.chain, "chain", true, "also measure a chained Check: corsauthz with the do-nothing server as the api policy's gRPC authorizer (chain.go)")
	flag.Var(binFlag{&o.variants}, "variant-bin", "also measure another corsauthz binary, such as one built from an earlier commit: NAME=PATH (repeatable)")
	flag.BoolVar(&o.httpMode, "http", false, "measure the HTTP authorization listener instead, directly and through NGINX (http.go)")
	flag.DurationVar(&o.http.duration, "http-duration", 4*time.Second, "with -http: length of each wrk run")
	flag.IntVar(&o.http.connections, "http-connections", 32, "with -http: wrk connections")
	flag.IntVar(&o.http.rounds, "http-rounds", 3, "with -http: rounds")
	flag.StringVar(&o.http.wrk, "wrk", "", "with -http: wrk binary (default: wrk on PATH, installed with apt-get if missing)")
	flag.Parse()
	if o.n <= 0 || o.c <= 0 || o.conns <= 0 || o.rounds <= 0 || o.warmup < 0 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "loadbench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "loadbench: "+format+"\n", args...)
	}
	env, err := describeMachine(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# corsauthz load benchmark\n\n%s\n", env)
	if o.httpMode {
		return runHTTP(ctx, o, stdout, logf)
	}

	if !o.skipLoad {
		if err := runLoad(ctx, o, stdout, logf); err != nil {
			return err
		}
	}
	if !o.skipCompile {
		logf("timing compile and Decide on a 10,000-origin configuration")
		if err := reportCompile(stdout); err != nil {
			return err
		}
	}
	return nil
}

func runLoad(ctx context.Context, o options, stdout io.Writer, logf func(string, ...any)) error {
	work := o.workDir
	if work == "" {
		dir, err := os.MkdirTemp("", "loadbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		work = dir
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	ghz, err := findGhz(ctx, o.ghz, logf)
	if err != nil {
		return err
	}

	logf("building corsauthz and the do-nothing server in %s", work)
	corsBin, nothingBin := filepath.Join(work, "corsauthz"), filepath.Join(work, "nothing")
	for _, b := range [][2]string{{corsBin, "./cmd/corsauthz"}, {nothingBin, "./cmd/loadbench/nothing"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b[0], b[1])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b[1], err, out)
		}
	}

	configFile := filepath.Join(work, "config.yaml")
	config := benchConfig()
	if o.caps {
		config = capsConfig()
	}
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		return err
	}
	protosetFile := filepath.Join(work, "authz.protoset")
	if err := writeProto(protosetFile, protoset()); err != nil {
		return err
	}
	kinds, err := selectKinds(requestKinds(), o.kinds)
	if err != nil {
		return err
	}
	dataFiles := make([]string, len(kinds))
	for i, k := range kinds {
		data, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(k.req)
		if err != nil {
			return err
		}
		dataFiles[i] = filepath.Join(work, k.name+".json")
		if err := os.WriteFile(dataFiles[i], data, 0o644); err != nil {
			return err
		}
	}

	corsAddr, err := freePort()
	if err != nil {
		return err
	}
	adminAddr, err := freePort()
	if err != nil {
		return err
	}
	nothingAddr, err := freePort()
	if err != nil {
		return err
	}
	corsArgs := []string{"serve", "--config", configFile, "--grpc-addr", corsAddr, "--admin-addr", adminAddr, "--http-addr", ""}
	nothingArgs := []string{"-addr", nothingAddr}
	if o.profileDir != "" {
		dir, err := filepath.Abs(o.profileDir)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		corsArgs = append(corsArgs, "--cpuprofile", filepath.Join(dir, "corsauthz.prof"))
		nothingArgs = append(nothingArgs, "-cpuprofile", filepath.Join(dir, "nothing.prof"))
	}
	servers := make([]*process, 0, 2)
	defer func() {
		for _, p := range servers {
			if err := p.stop(); err != nil {
				logf("stopping %s: %v", p.name, err)
			}
		}
	}()
	cors, err := start("corsauthz", corsAddr, filepath.Join(work, "corsauthz.log"), nil, corsBin, corsArgs...)
	if err != nil {
		return err
	}
	servers = append(servers, cors)
	nothing, err := start("do-nothing", nothingAddr, filepath.Join(work, "nothing.log"), nil, nothingBin, nothingArgs...)
	if err != nil {
		return err
	}
	servers = append(servers, nothing)
	if o.chain {
		chainFile := filepath.Join(work, "chain.yaml")
		if err := os.WriteFile(chainFile, []byte(chainConfig(config, nothingAddr)), 0o644); err != nil {
			return err
		}
		chained := []variant{{name: chainedName, config: chainFile}}
		for _, v := range o.variants { // chained too, to compare in the same rounds
			chained = append(chained, variant{name: v.name + chainedSuffix, bin: v.bin, env: v.env, config: chainFile})
		}
		o.variants = append(o.variants, chained...)
	}
	for i, v := range o.variants {
		grpcAddr, err := freePort()
		if err != nil {
			return err
		}
		admin, err := freePort()
		if err != nil {
			return err
		}
		args := []string{"serve", "--config", cmp.Or(v.config, configFile), "--grpc-addr", grpcAddr, "--admin-addr", admin, "--http-addr", ""}
		if o.profileDir != "" {
			dir, err := filepath.Abs(o.profileDir)
			if err != nil {
				return err
			}
			args = append(args, "--cpuprofile", filepath.Join(dir, fmt.Sprintf("variant%d.prof", i)))
		}
		bin := cmp.Or(v.bin, corsBin)
		p, err := start(v.name, grpcAddr, filepath.Join(work, fmt.Sprintf("variant%d.log", i)), v.env, bin, args...)
		if err != nil {
			return err
		}
		servers = append(servers, p)
	}

	// Both answer, and corsauthz answers each request as intended: the
	// load measures the decisions it claims to.
	for _, p := range servers {
		if _, err := p.waitReady(ctx, kinds[0].req, 15*time.Second); err != nil {
			return err
		}
	}
	for _, k := range kinds {
		for _, p := range servers {
			resp, err := p.check(ctx, k.req)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", p.name, k.name, err)
			}
			if p == nothing {
				if resp.GetStatus().GetCode() != 0 {
					return fmt.Errorf("do-nothing server, %s: %v", k.name, resp)
				}
			} else if err := expectAnswer(k.name, resp); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
	}

	ticks := clockTicks()
	res := newResults(kinds, servers)
	if o.warmup > 0 {
		logf("warming up: %d Checks per server and request sort", o.warmup)
		for _, k := range dataFiles {
			for _, p := range servers {
				l := load{ghz: ghz, protoset: protosetFile, dataFile: k, addr: p.addr, n: o.warmup, c: o.c, conns: o.conns}
				if _, err := runGhz(ctx, l); err != nil {
					return err
				}
			}
		}
	}
	for round := range o.rounds {
		for ki, k := range kinds {
			// A, B, then B, A, ...: each server goes first as often.
			order := slices.Clone(servers)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, p := range order {
				if err := ctx.Err(); err != nil {
					return err
				}
				before, err := cpuTicks(p.pid())
				if err != nil {
					return err
				}
				l := load{ghz: ghz, protoset: protosetFile, dataFile: dataFiles[ki], addr: p.addr, n: o.n, c: o.c, conns: o.conns}
				rep, err := runGhz(ctx, l)
				if err != nil {
					return err
				}
				after, err := cpuTicks(p.pid())
				if err != nil {
					return err
				}
				rss, _, err := memKiB(p.pid())
				if err != nil {
					return err
				}
				r := run1{
					checks: rep.Count,
					cpu:    time.Duration(after-before) * time.Second / time.Duration(ticks),
					rps:    rep.RPS,
					p50:    rep.percentile(50),
					p99:    rep.percentile(99),
					rssKiB: rss,
				}
				res.add(p.name, k.name, r)
				logf("round %d/%d %-10s %-10s %6.0f Checks/s  p50 %-8v p99 %-8v CPU %5.1f µs/Check  RSS %d MiB",
					round+1, o.rounds, k.name, p.name, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond),
					r.cpuPerCheck(), rss>>10)
			}
		}
	}
	for _, p := range servers {
		_, hwm, err := memKiB(p.pid())
		if err != nil {
			return err
		}
		res.hwmKiB[p.name] = hwm
	}
	res.write(stdout, o, ticks)
	if o.caps {
		if err := res.writeCaps(stdout, []byte(config)); err != nil { // caps.go
			return err
		}
	}
	if o.profileDir != "" {
		fmt.Fprintf(stdout, "\nCPU profiles (written when the servers stop): `go tool pprof -top %s %s`\n",
			filepath.Join(o.profileDir, "corsauthz.prof"), filepath.Join(o.profileDir, "nothing.prof"))
	}
	return nil
}

// selectKinds returns the request sorts named in list, in their order.
func selectKinds(all []requestKind, list string) ([]requestKind, error) {
	var out []requestKind
	for _, name := range strings.Split(list, ",") {
		i := slices.IndexFunc(all, func(k requestKind) bool { return k.name == name })
		if i < 0 {
			return nil, fmt.Errorf("-kinds: no request sort %q (there are preflight, actual and no-origin)", name)
		}
		out = append(out, all[i])
	}
	return out, nil
}

// expectAnswer checks corsauthz's answer to each request sort.
func expectAnswer(kind string, resp *authv3.CheckResponse) error {
	acao := ""
	var headers = resp.GetOkResponse().GetResponseHeadersToAdd()
	if d := resp.GetDeniedResponse(); d != nil {
		headers = d.GetHeaders()
	}
	for _, h := range headers {
		if h.GetHeader().GetKey() == "Access-Control-Allow-Origin" {
			acao = h.GetHeader().GetValue()
		}
	}
	ok := false
	switch kind {
	case "preflight":
		ok = resp.GetStatus().GetCode() == 7 && resp.GetDeniedResponse().GetStatus().GetCode() == 204 && acao == benchAllowOrigin
	case "actual":
		ok = resp.GetStatus().GetCode() == 0 && resp.GetOkResponse() != nil && acao == benchAllowOrigin
	case "no-origin":
		// Vary: Origin only, so that no cache hands it to a CORS request.
		ok = resp.GetStatus().GetCode() == 0 && resp.GetOkResponse() != nil && len(headers) == 1 &&
			headers[0].GetHeader().GetKey() == "Vary" && headers[0].GetHeader().GetValue() == "Origin"
	}
	if !ok {
		return fmt.Errorf("%s: unexpected answer %v", kind, resp)
	}
	return nil
}

func writeProto(name string, m proto.Message) error {
	data, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(name, data, 0o644)
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run loadbench inside the corsauthz module")
	}
	return filepath.Dir(gomod), nil
}

// describeMachine says what the figures were measured on.
func describeMachine(ctx context.Context) (string, error) {
	goVersion, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %w", err)
	}
	nproc, _ := exec.CommandContext(ctx, "nproc").Output()
	model := "unknown"
	if out, err := exec.CommandContext(ctx, "lscpu").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "Model name" {
				model = strings.TrimSpace(value)
				break
			}
		}
	}
	return fmt.Sprintf("Machine: %s CPU(s), %s; %s; ghz %s.\n",
		strings.TrimSpace(string(nproc)), model, strings.TrimSpace(string(goVersion)), ghzVersion), nil
}
