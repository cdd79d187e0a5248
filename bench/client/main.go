// Command benchclient is the load client of the hamn benchmark (bench/bench.py).
//
// It is written in Go so that the client is not the bottleneck when a
// registry is measured. Every subcommand prints one JSON object on stdout.
//
//	push       push one large blob from a file, monolithic or chunked
//	smallpush  push many small random blobs with a pool of workers
//	tags       push one small image and tag its manifest under many tags
//	walk       page through a tags list with ?n=, following Link headers
//	load       send one request over and over on N connections for a while
//	           (used for HEAD, which wrk 4.1 cannot measure: its parser waits
//	           for a body after a HEAD response that has a Content-Length)
//	sink       an HTTP server that accepts uploads and discards them, to
//	           measure what this client can do against a server that costs
//	           nothing (the client's ceiling)
//	token      get a bearer token for a scope (for wrk, curl and load, which
//	           send a prebuilt Authorization header)
//
// With BENCH_USERNAME and BENCH_PASSWORD in the environment it authenticates the
// way registry clients (docker, containers/image) do: a 401 from /v2/ names the
// token realm; a token per scope is fetched there with Basic credentials, sent
// as a Bearer token, and reused until it is about to expire. Without them it
// sends no credentials (Distribution as benchmarked runs without auth).
//
// Only loopback addresses are accepted as targets. Every loop is bounded in
// count and in time.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchclient push|smallpush|tags|walk|load|sink [flags]")
		os.Exit(2)
	}
	cmds := map[string]func([]string) (any, error){
		"push":      cmdPush,
		"smallpush": cmdSmallPush,
		"tags":      cmdTags,
		"walk":      cmdWalk,
		"sink":      cmdSink,
		"load":      cmdLoad,
		"token":     cmdToken,
	}
	fn, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "benchclient: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	out, err := fn(os.Args[2:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchclient %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// ---------------------------------------------------------------- helpers

type registry struct {
	base   *url.URL
	client *http.Client
	auth   *tokenAuth // nil: send no credentials
}

func newRegistry(raw string, conns int, timeout time.Duration) (*registry, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("refusing non-loopback target %q", raw)
	}
	tr := &http.Transport{
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		MaxConnsPerHost:     0,
		DisableCompression:  true,
		IdleConnTimeout:     30 * time.Second,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      64 << 10,
	}
	r := &registry{base: u, client: &http.Client{Transport: tr, Timeout: timeout}}
	if user := os.Getenv("BENCH_USERNAME"); user != "" {
		r.auth = &tokenAuth{user: user, pass: os.Getenv("BENCH_PASSWORD"),
			tokens: map[string]bearer{}}
	}
	return r, nil
}

// resolve turns a Location header (absolute or relative) into a URL.
func (r *registry) resolve(loc string) (string, error) {
	if loc == "" {
		return "", errors.New("response has no Location header")
	}
	u, err := r.base.Parse(loc)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

func withQuery(raw, key, value string) string {
	sep := "?"
	if strings.Contains(raw, "?") {
		sep = "&"
	}
	return raw + sep + url.QueryEscape(key) + "=" + url.QueryEscape(value)
}

func (r *registry) url(path string) string {
	return strings.TrimRight(r.base.String(), "/") + path
}

// do sends a request and drains and closes the body, returning the response
// (with a closed body) and at most 512 bytes of the body for error messages.
func (r *registry) do(ctx context.Context, method, u string, body io.Reader, size int64,
	hdr map[string]string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.ContentLength = size
		if seeker, ok := body.(io.ReadSeeker); ok && req.GetBody == nil {
			// So that a request refused for its token can be sent again.
			req.GetBody = func() (io.ReadCloser, error) {
				_, err := seeker.Seek(0, io.SeekStart)
				return io.NopCloser(seeker), err
			}
		}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.send(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(resp.Body, head)
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp, head[:n], nil
}

func expect(resp *http.Response, body []byte, method, u string, codes ...int) error {
	for _, c := range codes {
		if resp.StatusCode == c {
			return nil
		}
	}
	return fmt.Errorf("%s %s: HTTP %d (want %v): %s", method, u, resp.StatusCode, codes,
		strings.TrimSpace(string(body)))
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

const octet = "application/octet-stream"

// pushBytes pushes a blob with the two-request monolithic flow (POST, PUT).
func (r *registry) pushBytes(ctx context.Context, repo string, data []byte) error {
	start := r.url("/v2/" + repo + "/blobs/uploads/")
	resp, body, err := r.do(ctx, http.MethodPost, start, nil, 0, nil)
	if err != nil {
		return err
	}
	if err := expect(resp, body, "POST", start, 202); err != nil {
		return err
	}
	loc, err := r.resolve(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	put := withQuery(loc, "digest", digestOf(data))
	resp, body, err = r.do(ctx, http.MethodPut, put, bytes.NewReader(data), int64(len(data)),
		map[string]string{"Content-Type": octet})
	if err != nil {
		return err
	}
	return expect(resp, body, "PUT", put, 201)
}

// ---------------------------------------------------------------- auth

// tokenAuth is the Docker registry token flow of real clients: learn the realm
// from a 401 on /v2/, get a token per scope from it with Basic credentials, send
// it as a Bearer token and reuse it until shortly before it expires.
type tokenAuth struct {
	user, pass string

	mu      sync.Mutex
	realm   string // "" until the first challenge
	service string
	basic   bool // the server asked for Basic, not a token
	tokens  map[string]bearer
}

type bearer struct {
	value   string
	expires time.Time
}

// challenge is a parsed WWW-Authenticate header.
type challenge struct {
	scheme string
	params map[string]string
}

func parseChallenge(h string) challenge {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	c := challenge{scheme: strings.ToLower(scheme), params: map[string]string{}}
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if strings.HasPrefix(v, `"`) {
			end := strings.Index(v[1:], `"`)
			if end < 0 {
				c.params[k] = v[1:]
				break
			}
			c.params[k], rest = v[1:end+1], strings.TrimPrefix(v[end+2:], ",")
		} else {
			c.params[k], rest, _ = strings.Cut(v, ",")
		}
	}
	return c
}

// scopeFor is the scope a client asks a token for before this request: pull for
// reads, pull and push for writes, of the repository the path names; "" for /v2/.
func scopeFor(method, path string) string {
	name := strings.TrimPrefix(path, "/v2/")
	cut := -1
	for _, kind := range []string{"/blobs/", "/manifests/", "/tags/", "/referrers/"} {
		cut = max(cut, strings.LastIndex(name, kind))
	}
	if cut <= 0 {
		return ""
	}
	actions := "pull,push"
	if method == http.MethodGet || method == http.MethodHead {
		actions = "pull"
	}
	return "repository:" + name[:cut] + ":" + actions
}

// learn takes the realm and service (or a Basic scheme) from a 401 answer.
func (a *tokenAuth) learn(resp *http.Response) challenge {
	c := parseChallenge(resp.Header.Get("WWW-Authenticate"))
	a.mu.Lock()
	defer a.mu.Unlock()
	switch c.scheme {
	case "bearer":
		a.realm, a.service = c.params["realm"], c.params["service"]
	case "basic":
		a.basic = true
	}
	return c
}

// ping asks /v2/ for the server's challenge, once.
func (r *registry) ping(ctx context.Context) error {
	r.auth.mu.Lock()
	known := r.auth.realm != "" || r.auth.basic
	r.auth.mu.Unlock()
	if known {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url("/v2/"), nil)
	if err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		r.auth.learn(resp)
	}
	return nil
}

// token returns a bearer token for scope, fetching one when there is none that
// still has 10% of its life (at least 5 s) left. "" when the server wants none.
func (r *registry) token(ctx context.Context, scope string) (string, error) {
	if err := r.ping(ctx); err != nil {
		return "", err
	}
	a := r.auth
	a.mu.Lock()
	defer a.mu.Unlock() // fetches are rare: one at a time keeps them from piling up
	if a.realm == "" {
		return "", nil
	}
	if t, ok := a.tokens[scope]; ok && time.Now().Before(t.expires) {
		return t.value, nil
	}
	q := url.Values{}
	if a.service != "" {
		q.Set("service", a.service)
	}
	if scope != "" {
		q.Set("scope", scope)
	}
	realm := a.realm
	if len(q) > 0 {
		realm = withQueryString(realm, q.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm, nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(a.user, a.pass)
	resp, err := r.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("token for %q from %s: HTTP %d: %s", scope, a.realm,
			resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("token for %q: %v", scope, err)
	}
	value := body.Token
	if value == "" {
		value = body.AccessToken
	}
	if value == "" {
		return "", fmt.Errorf("token for %q: the answer has no token", scope)
	}
	life := time.Duration(body.ExpiresIn) * time.Second
	if life <= 0 {
		life = 60 * time.Second // the token spec's default
	}
	a.tokens[scope] = bearer{value, time.Now().Add(life - max(life/10, 5*time.Second))}
	return value, nil
}

// authorize sets the request's credentials for scope: a cached or new bearer
// token, or Basic when that is what the server asked for.
func (r *registry) authorize(req *http.Request, scope string) error {
	r.auth.mu.Lock()
	basic := r.auth.basic
	r.auth.mu.Unlock()
	if basic {
		req.SetBasicAuth(r.auth.user, r.auth.pass)
		return nil
	}
	t, err := r.token(req.Context(), scope)
	if err != nil {
		return err
	}
	if t != "" {
		req.Header.Set("Authorization", "Bearer "+t)
	}
	return nil
}

// send does one request with credentials (when configured). If the server still
// answers 401, it asks for the scope the challenge names and sends it once more.
func (r *registry) send(req *http.Request) (*http.Response, error) {
	if r.auth == nil {
		return r.client.Do(req)
	}
	scope := scopeFor(req.Method, req.URL.Path)
	if err := r.authorize(req, scope); err != nil {
		return nil, err
	}
	resp, err := r.client.Do(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	if req.Body != nil && req.GetBody == nil {
		return resp, nil // cannot send the body again: let the caller see the 401
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c := r.auth.learn(resp)
	if want := c.params["scope"]; want != "" {
		scope = want
	}
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	r.auth.mu.Lock()
	delete(r.auth.tokens, scope) // the cached one was refused
	r.auth.mu.Unlock()
	if err := r.authorize(retry, scope); err != nil {
		return nil, err
	}
	return r.client.Do(retry)
}

func withQueryString(raw, query string) string {
	if strings.Contains(raw, "?") {
		return raw + "&" + query
	}
	return raw + "?" + query
}

// prepare gets, before a measurement starts, the token its requests will use.
func (r *registry) prepare(ctx context.Context, scope string) error {
	if r.auth == nil {
		return nil
	}
	_, err := r.token(ctx, scope)
	return err
}

type tokenResult struct {
	Token string `json:"token"`
	Scope string `json:"scope"`
	// UsableSeconds is how long this client would reuse the token (its life
	// less a margin), i.e. how long a run may send it.
	UsableSeconds float64 `json:"usable_seconds"`
}

func cmdToken(args []string) (any, error) {
	fs := flag.NewFlagSet("token", flag.ExitOnError)
	base := fs.String("url", "", "registry base URL")
	scope := fs.String("scope", "", "scope, e.g. repository:bench/manifest:pull")
	_ = fs.Parse(args)
	r, err := newRegistry(*base, 1, 30*time.Second)
	if err != nil {
		return nil, err
	}
	if r.auth == nil {
		return nil, errors.New("BENCH_USERNAME and BENCH_PASSWORD are not set")
	}
	t, err := r.token(context.Background(), *scope)
	if err != nil {
		return nil, err
	}
	if t == "" {
		return nil, errors.New("the server asked for no token (GET /v2/ is not a Bearer 401)")
	}
	r.auth.mu.Lock()
	left := time.Until(r.auth.tokens[*scope].expires).Seconds()
	r.auth.mu.Unlock()
	return tokenResult{Token: t, Scope: *scope, UsableSeconds: left}, nil
}

// ---------------------------------------------------------------- push

// nonceReaderAt reads a file with its first bytes replaced by nonce.
type nonceReaderAt struct {
	f     *os.File
	nonce []byte
}

func (r *nonceReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.f.ReadAt(p, off)
	if off < int64(len(r.nonce)) && n > 0 {
		copy(p[:n], r.nonce[off:])
	}
	return n, err
}

type pushResult struct {
	Mode       string  `json:"mode"`
	Digest     string  `json:"digest"`
	Bytes      int64   `json:"bytes"`
	Requests   int     `json:"requests"`
	Seconds    float64 `json:"seconds"`
	MiBPerSec  float64 `json:"mib_s"`
	ClientCPUs float64 `json:"client_cpu_s"`
}

func cmdPush(args []string) (any, error) {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	base := fs.String("url", "", "registry base URL (http://127.0.0.1:PORT)")
	repo := fs.String("repo", "bench/big", "repository")
	file := fs.String("file", "", "blob file")
	dgst := fs.String("digest", "", "digest of the file (sha256:...)")
	nonce := fs.String("nonce", "", "if set, the first bytes of the blob are replaced by this "+
		"string (so every push is a new blob); the digest is then computed here, before the clock starts")
	mode := fs.String("mode", "mono", "mono (POST + PUT with body) or chunked (POST, PATCH..., PUT)")
	chunk := fs.Int64("chunk", 16<<20, "chunk size for chunked pushes")
	timeout := fs.Duration("timeout", 120*time.Second, "overall time limit")
	_ = fs.Parse(args)
	if *file == "" || (*dgst == "" && *nonce == "") {
		return nil, errors.New("-file and one of -digest or -nonce are required")
	}
	r, err := newRegistry(*base, 1, *timeout)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(*file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if int64(len(*nonce)) > size {
		return nil, errors.New("-nonce is longer than the file")
	}
	src := &nonceReaderAt{f: f, nonce: []byte(*nonce)}
	if *nonce != "" {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(src, 0, size)); err != nil {
			return nil, err
		}
		*dgst = "sha256:" + hex.EncodeToString(h.Sum(nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := r.prepare(ctx, "repository:"+*repo+":pull,push"); err != nil {
		return nil, err
	}

	cpu0 := cpuSeconds()
	t0 := time.Now()
	requests := 0
	start := r.url("/v2/" + *repo + "/blobs/uploads/")
	resp, body, err := r.do(ctx, http.MethodPost, start, nil, 0, nil)
	requests++
	if err != nil {
		return nil, err
	}
	if err := expect(resp, body, "POST", start, 202); err != nil {
		return nil, err
	}
	loc, err := r.resolve(resp.Header.Get("Location"))
	if err != nil {
		return nil, err
	}
	switch *mode {
	case "mono":
		put := withQuery(loc, "digest", *dgst)
		resp, body, err = r.do(ctx, http.MethodPut, put, io.NewSectionReader(src, 0, size), size,
			map[string]string{"Content-Type": octet})
		requests++
		if err != nil {
			return nil, err
		}
		if err := expect(resp, body, "PUT", put, 201); err != nil {
			return nil, err
		}
	case "chunked":
		if *chunk <= 0 {
			return nil, errors.New("-chunk must be positive")
		}
		for off := int64(0); off < size; off += *chunk {
			n := min(*chunk, size-off)
			resp, body, err = r.do(ctx, http.MethodPatch, loc, io.NewSectionReader(src, off, n), n,
				map[string]string{
					"Content-Type":  octet,
					"Content-Range": fmt.Sprintf("%d-%d", off, off+n-1),
				})
			requests++
			if err != nil {
				return nil, err
			}
			if err := expect(resp, body, "PATCH", loc, 202); err != nil {
				return nil, err
			}
			if loc, err = r.resolve(resp.Header.Get("Location")); err != nil {
				return nil, err
			}
		}
		put := withQuery(loc, "digest", *dgst)
		resp, body, err = r.do(ctx, http.MethodPut, put, http.NoBody, 0,
			map[string]string{"Content-Type": octet})
		requests++
		if err != nil {
			return nil, err
		}
		if err := expect(resp, body, "PUT", put, 201); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown mode %q", *mode)
	}
	secs := time.Since(t0).Seconds()
	return pushResult{
		Mode: *mode, Digest: *dgst, Bytes: size, Requests: requests, Seconds: secs,
		MiBPerSec: float64(size) / (1 << 20) / secs, ClientCPUs: cpuSeconds() - cpu0,
	}, nil
}

// ---------------------------------------------------------------- smallpush

type smallResult struct {
	Mode        string   `json:"mode"`
	Count       int      `json:"count"`
	OK          int64    `json:"ok"`
	Failed      int64    `json:"failed"`
	Unsupported bool     `json:"unsupported"`
	Size        int      `json:"size"`
	Workers     int      `json:"workers"`
	Seconds     float64  `json:"seconds"`
	PerSec      float64  `json:"per_s"`
	ClientCPUs  float64  `json:"client_cpu_s"`
	ClientCores float64  `json:"client_cores"`
	Errors      []string `json:"errors"`
}

func cmdSmallPush(args []string) (any, error) {
	fs := flag.NewFlagSet("smallpush", flag.ExitOnError)
	base := fs.String("url", "", "registry base URL")
	repo := fs.String("repo", "bench/small", "repository")
	count := fs.Int("n", 200, "number of layers")
	workers := fs.Int("c", 16, "concurrent workers")
	size := fs.Int("size", 4096, "layer size in bytes")
	mode := fs.String("mode", "two", "two (POST + PUT) or single (one POST with ?digest= and body)")
	timeout := fs.Duration("timeout", 60*time.Second, "overall time limit")
	_ = fs.Parse(args)
	if *count <= 0 || *workers <= 0 || *size <= 0 {
		return nil, errors.New("-n, -c and -size must be positive")
	}
	r, err := newRegistry(*base, *workers, 30*time.Second)
	if err != nil {
		return nil, err
	}
	// Random content and digests are made before the clock starts.
	blobs := make([][]byte, *count)
	digests := make([]string, *count)
	for i := range blobs {
		blobs[i] = make([]byte, *size)
		if _, err := rand.Read(blobs[i]); err != nil {
			return nil, err
		}
		digests[i] = digestOf(blobs[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	// One warm-up request per worker, so connections exist before the clock starts.
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _ = r.do(ctx, http.MethodGet, r.url("/v2/"), nil, 0, nil)
		}()
	}
	wg.Wait()
	if err := r.prepare(ctx, "repository:"+*repo+":pull,push"); err != nil {
		return nil, err
	}

	var next, ok, failed, unsupported atomic.Int64
	var mu sync.Mutex
	var errs []string
	cpu0 := cpuSeconds()
	t0 := time.Now()
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *count || ctx.Err() != nil || unsupported.Load() > 0 {
					return
				}
				var err error
				if *mode == "single" {
					u := withQuery(r.url("/v2/"+*repo+"/blobs/uploads/"), "digest", digests[i])
					var resp *http.Response
					var body []byte
					resp, body, err = r.do(ctx, http.MethodPost, u, bytes.NewReader(blobs[i]),
						int64(len(blobs[i])), map[string]string{"Content-Type": octet})
					if err == nil && resp.StatusCode == 202 {
						// The server opened an upload session instead of taking the
						// blob: single-POST monolithic upload is not supported.
						unsupported.Add(1)
						return
					}
					if err == nil {
						err = expect(resp, body, "POST", u, 201)
					}
				} else {
					err = r.pushBytes(ctx, *repo, blobs[i])
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					mu.Unlock()
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	cpu := cpuSeconds() - cpu0
	res := smallResult{
		Mode: *mode, Count: *count, OK: ok.Load(), Failed: failed.Load(),
		Unsupported: unsupported.Load() > 0, Size: *size, Workers: *workers,
		Seconds: secs, PerSec: float64(ok.Load()) / secs, ClientCPUs: cpu,
		ClientCores: cpu / secs, Errors: errs,
	}
	if ctx.Err() != nil {
		res.Errors = append(res.Errors, "time limit reached")
	}
	return res, nil
}

// ---------------------------------------------------------------- tags

type tagsResult struct {
	Repo     string   `json:"repo"`
	Tags     int64    `json:"tags"`
	Failed   int64    `json:"failed"`
	Seconds  float64  `json:"seconds"`
	Manifest string   `json:"manifest_digest"`
	Errors   []string `json:"errors"`
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func cmdTags(args []string) (any, error) {
	fs := flag.NewFlagSet("tags", flag.ExitOnError)
	base := fs.String("url", "", "registry base URL")
	repo := fs.String("repo", "bench/tags", "repository")
	count := fs.Int("n", 1000, "number of tags")
	workers := fs.Int("c", 32, "concurrent workers")
	prefix := fs.String("prefix", "t", "tag prefix; tags are PREFIX00000, PREFIX00001, ...")
	timeout := fs.Duration("timeout", 300*time.Second, "overall time limit")
	_ = fs.Parse(args)
	r, err := newRegistry(*base, *workers, 60*time.Second)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	t0 := time.Now()

	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := make([]byte, 1024)
	if _, err := rand.Read(layer); err != nil {
		return nil, err
	}
	for _, b := range [][]byte{config, layer} {
		if err := r.pushBytes(ctx, *repo, b); err != nil {
			return nil, err
		}
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     ociManifest,
		"config": map[string]any{
			"mediaType": "application/vnd.oci.image.config.v1+json",
			"digest":    digestOf(config), "size": len(config),
		},
		"layers": []map[string]any{{
			"mediaType": "application/vnd.oci.image.layer.v1.tar",
			"digest":    digestOf(layer), "size": len(layer),
		}},
	})
	if err != nil {
		return nil, err
	}
	width := len(strconv.Itoa(max(*count-1, 0)))
	var next, ok, failed atomic.Int64
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *count || ctx.Err() != nil || failed.Load() > 20 {
					return
				}
				tag := fmt.Sprintf("%s%0*d", *prefix, width, i)
				u := r.url("/v2/" + *repo + "/manifests/" + tag)
				resp, body, err := r.do(ctx, http.MethodPut, u, bytes.NewReader(manifest),
					int64(len(manifest)), map[string]string{"Content-Type": ociManifest})
				if err == nil {
					err = expect(resp, body, "PUT", u, 201)
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					mu.Unlock()
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	res := tagsResult{Repo: *repo, Tags: ok.Load(), Failed: failed.Load(),
		Seconds: time.Since(t0).Seconds(), Manifest: digestOf(manifest), Errors: errs}
	if res.Tags != int64(*count) {
		return res, fmt.Errorf("created %d of %d tags: %v", res.Tags, *count, errs)
	}
	return res, nil
}

// ---------------------------------------------------------------- walk

type walkResult struct {
	Repo         string  `json:"repo"`
	PageSize     int     `json:"page_size"`
	Pages        int     `json:"pages"`
	Tags         int     `json:"tags"`
	Seconds      float64 `json:"seconds"`
	PagesPerSec  float64 `json:"pages_s"`
	HonoursN     bool    `json:"honours_n"`
	MaxPageSize  int     `json:"max_page_tags"`
	Sorted       bool    `json:"sorted"`
	Duplicates   int     `json:"duplicates"`
	ClientCPUs   float64 `json:"client_cpu_s"`
	Complete     bool    `json:"complete"`
	StoppedEarly string  `json:"stopped_early,omitempty"`
}

func nextLink(h string) string {
	// Link: </v2/x/tags/list?last=a&n=100>; rel="next"
	for _, part := range strings.Split(h, ",") {
		part = strings.TrimSpace(part)
		if !strings.Contains(part, `rel="next"`) && !strings.Contains(part, "rel=next") {
			continue
		}
		if i, j := strings.Index(part, "<"), strings.Index(part, ">"); i >= 0 && j > i {
			return part[i+1 : j]
		}
	}
	return ""
}

func cmdWalk(args []string) (any, error) {
	fs := flag.NewFlagSet("walk", flag.ExitOnError)
	base := fs.String("url", "", "registry base URL")
	repo := fs.String("repo", "bench/tags", "repository")
	n := fs.Int("n", 100, "page size")
	want := fs.Int("expect", 10000, "number of tags expected")
	timeout := fs.Duration("timeout", 60*time.Second, "overall time limit")
	_ = fs.Parse(args)
	r, err := newRegistry(*base, 1, 30*time.Second)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	maxPages := *want/max(*n, 1)*2 + 10
	seen := make(map[string]struct{}, *want)
	res := walkResult{Repo: *repo, PageSize: *n, Sorted: true}
	last := ""
	next := r.url(fmt.Sprintf("/v2/%s/tags/list?n=%d", *repo, *n))
	if err := r.prepare(ctx, "repository:"+*repo+":pull"); err != nil {
		return nil, err
	}
	cpu0 := cpuSeconds()
	t0 := time.Now()
	for next != "" {
		if res.Pages >= maxPages {
			res.StoppedEarly = "page limit"
			break
		}
		if ctx.Err() != nil {
			res.StoppedEarly = "time limit"
			break
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		resp, err := r.send(req)
		if err != nil {
			return nil, err
		}
		var page struct {
			Tags []string `json:"tags"`
		}
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return nil, fmt.Errorf("GET %s: HTTP %d: %s", next, resp.StatusCode, b)
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("GET %s: %v", next, err)
		}
		res.Pages++
		res.MaxPageSize = max(res.MaxPageSize, len(page.Tags))
		for _, t := range page.Tags {
			if _, dup := seen[t]; dup {
				res.Duplicates++
			}
			seen[t] = struct{}{}
			if t < last {
				res.Sorted = false
			}
			last = t
		}
		link := nextLink(resp.Header.Get("Link"))
		if link == "" {
			break
		}
		if next, err = r.resolve(link); err != nil {
			return nil, err
		}
	}
	res.Seconds = time.Since(t0).Seconds()
	res.ClientCPUs = cpuSeconds() - cpu0
	res.Tags = len(seen)
	res.PagesPerSec = float64(res.Pages) / res.Seconds
	res.HonoursN = res.MaxPageSize <= *n
	res.Complete = res.Tags == *want && res.StoppedEarly == ""
	return res, nil
}

// ---------------------------------------------------------------- load

type loadResult struct {
	Method      string  `json:"method"`
	Connections int     `json:"connections"`
	Requests    int     `json:"requests"`
	Non2xx      int     `json:"non2xx"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Seconds     float64 `json:"seconds"`
	PerSec      float64 `json:"rps"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	ClientCPUs  float64 `json:"client_cpu_s"`
	ClientCores float64 `json:"client_cores"`
}

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// cmdLoad is a minimal HTTP/1.1 keep-alive load generator: each worker owns one
// connection, writes a prebuilt request and reads the response (status line,
// headers, then the body by Content-Length or chunked encoding; none for HEAD).
// It is about as cheap per request as wrk, which matters on a 2-core machine
// where the client and the server share the CPU.
func cmdLoad(args []string) (any, error) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	target := fs.String("url", "", "full URL to request (http://127.0.0.1:PORT/path)")
	method := fs.String("method", "GET", "GET or HEAD")
	conns := fs.Int("c", 64, "connections (one worker each)")
	duration := fs.Duration("d", 10*time.Second, "how long to send requests")
	maxReq := fs.Int("max-requests", 5_000_000, "stop after this many requests in all")
	var headers headerFlags
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable)")
	_ = fs.Parse(args)
	if *conns <= 0 {
		return nil, errors.New("-c must be positive")
	}
	r, err := newRegistry(*target, 1, time.Second) // only for the loopback check
	if err != nil {
		return nil, err
	}
	u := r.base
	if u.Scheme != "http" {
		return nil, fmt.Errorf("only http:// URLs: %q", *target)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	var rb strings.Builder
	fmt.Fprintf(&rb, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hamn-bench\r\n", *method,
		u.RequestURI(), u.Host)
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return nil, fmt.Errorf("bad header %q", h)
		}
		fmt.Fprintf(&rb, "%s: %s\r\n", strings.TrimSpace(k), strings.TrimSpace(v))
	}
	rb.WriteString("\r\n")
	request := []byte(rb.String())
	head := *method == http.MethodHead

	type worker struct {
		lat          []time.Duration
		non2xx, errs int
		firstErr     string
	}
	workers := make([]*worker, *conns)
	var issued atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuSeconds()
	t0 := time.Now()
	deadline := t0.Add(*duration)
	for i := range workers {
		w := &worker{lat: make([]time.Duration, 0, 4096)}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			var br *bufio.Reader
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			fail := func(err error) {
				w.errs++
				if w.firstErr == "" {
					w.firstErr = err.Error()
				}
				if conn != nil {
					conn.Close()
					conn = nil
				}
			}
			for time.Now().Before(deadline) && issued.Add(1) <= int64(*maxReq) {
				s := time.Now()
				if conn == nil {
					c, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						w.lat = append(w.lat, time.Since(s))
						fail(err)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					conn, br = c, bufio.NewReaderSize(c, 64<<10)
				}
				_ = conn.SetDeadline(s.Add(30 * time.Second))
				status, closeConn := 0, false
				_, err := conn.Write(request)
				if err == nil {
					status, closeConn, err = readResponse(br, head)
				}
				w.lat = append(w.lat, time.Since(s))
				if err != nil {
					fail(err)
					continue
				}
				if status < 200 || status > 399 {
					w.non2xx++
					if w.firstErr == "" {
						w.firstErr = fmt.Sprintf("HTTP %d", status)
					}
				}
				if closeConn {
					conn.Close()
					conn = nil
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	res := loadResult{Method: *method, Connections: *conns, Seconds: secs}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		res.Non2xx += w.non2xx
		res.Errors += w.errs
		if res.FirstError == "" {
			res.FirstError = w.firstErr
		}
	}
	res.Requests = len(all)
	res.ClientCPUs = cpuSeconds() - cpu0
	res.ClientCores = res.ClientCPUs / secs
	res.PerSec = float64(res.Requests-res.Errors) / secs
	if len(all) > 0 {
		slices.Sort(all)
		q := func(p float64) float64 {
			i := int(p * float64(len(all)-1))
			return float64(all[i].Microseconds()) / 1000
		}
		res.P50ms, res.P90ms, res.P99ms, res.MaxMs = q(0.50), q(0.90), q(0.99), q(1)
	}
	return res, nil
}

// readResponse reads one HTTP/1.x response and discards its body. It returns the
// status code and whether the server will close the connection.
func readResponse(br *bufio.Reader, head bool) (int, bool, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	parts := strings.SplitN(strings.TrimSpace(string(line)), " ", 3)
	if len(parts) < 2 || !strings.HasPrefix(parts[0], "HTTP/1.") {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	closeConn := parts[0] == "HTTP/1.0"
	length, chunked := int64(-1), false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return status, true, err
		}
		h := strings.TrimSpace(string(line))
		if h == "" {
			break
		}
		k, v, _ := strings.Cut(h, ":")
		v = strings.TrimSpace(v)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "content-length":
			if length, err = strconv.ParseInt(v, 10, 64); err != nil {
				return status, true, fmt.Errorf("bad Content-Length %q", v)
			}
		case "transfer-encoding":
			chunked = strings.Contains(strings.ToLower(v), "chunked")
		case "connection":
			switch strings.ToLower(v) {
			case "close":
				closeConn = true
			case "keep-alive":
				closeConn = false
			}
		}
	}
	if head || status == 204 || status == 304 || status < 200 {
		return status, closeConn, nil
	}
	switch {
	case chunked:
		for {
			line, err = br.ReadSlice('\n')
			if err != nil {
				return status, true, err
			}
			sz, _, _ := strings.Cut(strings.TrimSpace(string(line)), ";")
			n, err := strconv.ParseInt(sz, 16, 64)
			if err != nil {
				return status, true, fmt.Errorf("bad chunk size %q", line)
			}
			if n == 0 {
				for { // trailers, up to the blank line
					line, err = br.ReadSlice('\n')
					if err != nil {
						return status, true, err
					}
					if strings.TrimSpace(string(line)) == "" {
						return status, closeConn, nil
					}
				}
			}
			if _, err := br.Discard(int(n) + 2); err != nil {
				return status, true, err
			}
		}
	case length >= 0:
		_, err = br.Discard(int(length))
		return status, closeConn, err
	default: // body runs to the end of the connection
		_, err = io.Copy(io.Discard, br)
		return status, true, err
	}
}

// ---------------------------------------------------------------- sink

// cmdSink serves a registry look-alike that does no work: POST opens an
// "upload" (202 + Location), PATCH drains the body (202), PUT drains the body
// (201), GET /v2/ answers 200. It prints its address, then serves until
// -duration has passed or its standard input is closed.
func cmdSink(args []string) (any, error) {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (loopback)")
	duration := fs.Duration("duration", 10*time.Minute, "serve at most this long")
	_ = fs.Parse(args)
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("refusing non-loopback address %q", *addr)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return nil, err
	}
	var id atomic.Int64
	bufs := sync.Pool{New: func() any { return make([]byte, 1<<20) }}
	handler := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Read with a large buffer (io.Discard's own is 8 KiB) so the sink is cheap.
		buf := bufs.Get().([]byte)
		var n int64
		for {
			k, err := req.Body.Read(buf)
			n += int64(k)
			if err != nil {
				break
			}
		}
		bufs.Put(buf) //nolint:staticcheck // a slice header is fine here
		switch req.Method {
		case http.MethodPost:
			if req.URL.Query().Get("digest") != "" {
				w.WriteHeader(201)
				return
			}
			w.Header().Set("Location", fmt.Sprintf("%s%d", req.URL.Path, id.Add(1)))
			w.WriteHeader(202)
		case http.MethodPatch:
			w.Header().Set("Location", req.URL.Path)
			w.Header().Set("Range", fmt.Sprintf("0-%d", max(n-1, 0)))
			w.WriteHeader(202)
		case http.MethodPut:
			w.WriteHeader(201)
		default:
			w.WriteHeader(200)
		}
	})
	fmt.Printf("listening %s\n", ln.Addr())
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = srv.Close()
	}()
	go func() {
		time.Sleep(*duration)
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return nil, err
	}
	return map[string]string{"stopped": "ok"}, nil
}
