package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// browserEnv is the environment variable that makes a missing browser a
// failure instead of a skip: CI sets CORSAUTHZ_E2E_BROWSER=require.
const browserEnv = "CORSAUTHZ_E2E_BROWSER"

// browserNames are the names Chromium goes by, tried in order.
var browserNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "/usr/bin/chromium"}

// findBrowser returns the path of a Chromium-based browser, or "".
func findBrowser() string {
	for _, name := range browserNames {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	return ""
}

// startBrowser starts one headless Chromium for the whole test, with a
// fresh profile, and returns its chromedp context: derive a tab from it
// with chromedp.NewContext. Without a browser the test is skipped, or
// fails when CORSAUTHZ_E2E_BROWSER=require.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := findBrowser()
	if path == "" {
		msg := fmt.Sprintf("no Chromium found (looked for %v): install one, e.g. apt-get install chromium", browserNames)
		if os.Getenv(browserEnv) == "require" {
			t.Fatalf("%s (%s=require makes this a failure instead of a skip)", msg, browserEnv)
		}
		t.Skipf("%s; set %s=require to make this a failure", msg, browserEnv)
	}
	profile := t.TempDir() // removed after the browser has stopped (cleanups run last-in first-out)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-extensions", true),
	)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browser); err != nil { // starts the browser
		t.Fatalf("start %s: %v", path, err)
	}
	if version, err := chromedp.CallBrowser(browser, cdpbrowser.GetVersion, cdp.Empty{}); err == nil {
		t.Logf("browser: %s (%s)", version.Product, path)
	}
	return browser
}

// fetchCall is one fetch() the page makes, in the page's script.
type fetchCall struct {
	URL  string    `json:"url"`
	Init fetchInit `json:"init"`
	// Read lists the response headers the script reads with
	// response.headers.get; an unreadable one reads as null.
	Read []string `json:"read,omitempty"`
	// PauseMillis is a pause before the call.
	PauseMillis int `json:"pauseMs,omitempty"`
}

// fetchInit is fetch()'s RequestInit.
type fetchInit struct {
	Method      string            `json:"method,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Body        string            `json:"body,omitempty"`
	Credentials string            `json:"credentials,omitempty"` // "omit", "same-origin" (the default) or "include"
}

// fetchResult is what the page's script sees.
type fetchResult struct {
	OK     bool   `json:"ok"`
	Status int    `json:"status"`
	Error  string `json:"error"` // the name of the error fetch() rejected with, such as "TypeError"
	// Headers are the values of Read; null (not there, or not exposed to
	// the script) is noHeader.
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	Message string            `json:"message"` // the error's message: logged, not compared
}

// noHeader is what a script reads for a response header that is absent or
// that CORS hides from it: response.headers.get returns null.
const noHeader = "(null)"

// fetchScript runs the calls one after another and resolves to their
// results; it never rejects.
const fetchScript = `async (calls) => {
  const out = [];
  for (const c of calls) {
    if (c.pauseMs) await new Promise(done => setTimeout(done, c.pauseMs));
    const r = {ok: false, status: 0, error: "", message: "", headers: {}, body: ""};
    try {
      const resp = await fetch(c.url, c.init);
      r.ok = resp.ok;
      r.status = resp.status;
      for (const name of c.read || []) r.headers[name] = resp.headers.get(name) ?? ` + "`" + noHeader + "`" + `;
      r.body = await resp.text();
    } catch (e) {
      r.error = e.name;
      r.message = e.message;
    }
    out.push(r);
  }
  return out;
}`

// tab is one browser tab showing a page.
type tab struct {
	ctx context.Context

	mu         sync.Mutex
	corsErrors []network.CorsError // from Network.loadingFailed, in order
}

// tabTimeout bounds everything one tab does.
const tabTimeout = 30 * time.Second

// openTab opens a new tab in browser on pageURL, recording the CORS
// errors Chromium reports for it. Closing it is the caller's, with the
// cancel func returned.
func openTab(browser context.Context, pageURL string) (*tab, context.CancelFunc, error) {
	ctx, cancelTab := chromedp.NewContext(browser)
	ctx, cancelTimeout := context.WithTimeout(ctx, tabTimeout)
	cancel := func() { cancelTimeout(); cancelTab() }
	tb := &tab{ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*network.EventLoadingFailed); ok && ev.CorsErrorStatus != nil {
			tb.mu.Lock()
			tb.corsErrors = append(tb.corsErrors, ev.CorsErrorStatus.CorsError)
			tb.mu.Unlock()
		}
	})
	if err != nil {
		return nil, cancel, fmt.Errorf("open a tab: %w", err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		return nil, cancel, fmt.Errorf("enable network events: %w", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL)); err != nil {
		return nil, cancel, fmt.Errorf("navigate to %s: %w", pageURL, err)
	}
	return tb, cancel, nil
}

// fetch runs the calls in the page and returns what its script saw.
func (tb *tab) fetch(calls []fetchCall) ([]fetchResult, error) {
	arg, err := json.Marshal(calls)
	if err != nil {
		return nil, err
	}
	res, err := chromedp.Run(tb.ctx, chromedp.Evaluate[[]fetchResult](
		"("+fetchScript+")("+string(arg)+")", chromedp.EvalAwaitPromise))
	if err != nil {
		return nil, fmt.Errorf("run the page's fetch script: %w", err)
	}
	return res, nil
}

// waitCORSErrors returns the CORS errors Chromium reported, waiting a
// little for n of them: the DevTools event can trail the script.
func (tb *tab) waitCORSErrors(n int) []network.CorsError {
	deadline := time.Now().Add(2 * time.Second)
	for {
		tb.mu.Lock()
		got := append([]network.CorsError(nil), tb.corsErrors...)
		tb.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}
