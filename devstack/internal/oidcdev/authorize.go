package oidcdev

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwt"
)

// BrowserClient is a public client that signs people in with the authorization code flow and
// PKCE (RFC 6749 §4.1, RFC 7636): a single-page portal, which can keep no secret, so the code
// is bound to the verifier only its own tab holds and to a redirect URI registered here.
type BrowserClient struct {
	ClientID     string
	RedirectURIs []string
}

// DefaultPortalRedirectURI is where the reference portal served by `make up` takes its code.
const DefaultPortalRedirectURI = "http://127.0.0.1:8080/callback"

// CodeTTL is how long an authorization code may wait for its exchange: long enough for a
// browser's redirect, short enough that a leaked code is worth little (RFC 6749 §4.1.2 advises
// at most ten minutes).
const CodeTTL = time.Minute

// maxPendingCodes bounds the codes waiting for exchange, so that a loop hitting /authorize
// cannot grow the issuer without end.
const maxPendingCodes = 1000

// authorizationCode is what a code stands for until it is exchanged, once.
type authorizationCode struct {
	clientID      string
	redirectURI   string
	codeChallenge string
	user          string
	scope         string
	nonce         string
	authTime      time.Time
	expires       time.Time
}

// codeStore holds the codes not yet exchanged.
type codeStore struct {
	mu    sync.Mutex
	codes map[string]authorizationCode
}

func (s *codeStore) put(code string, c authorizationCode, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.codes == nil {
		s.codes = map[string]authorizationCode{}
	}
	for k, v := range s.codes {
		if now.After(v.expires) {
			delete(s.codes, k)
		}
	}
	if len(s.codes) >= maxPendingCodes {
		return false
	}
	s.codes[code] = c
	return true
}

// take removes the code whatever happens next: a code is good for one exchange attempt, so a
// stolen code raced against the real client fails one of them loudly (RFC 6749 §10.5).
func (s *codeStore) take(code string) (authorizationCode, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[code]
	delete(s.codes, code)
	return c, ok
}

// ParseRedirectURIs reads a comma-separated list of redirect URIs, each absolute, http or https,
// on a loopback host and without a fragment (RFC 6749 §3.1.2): the dev issuer sends codes to
// this machine only.
func ParseRedirectURIs(list string) ([]string, error) {
	var out []string
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("%q is not an absolute http(s) URI without a fragment", raw)
		}
		if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("%q is not on a loopback address", raw)
		}
		out = append(out, raw)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no redirect URI given")
	}
	return out, nil
}

// SetBrowserClient registers (or replaces) a public client and its exact redirect URIs.
func (i *Issuer) SetBrowserClient(c BrowserClient) {
	i.browserMu.Lock()
	defer i.browserMu.Unlock()
	if i.browser == nil {
		i.browser = map[string]BrowserClient{}
	}
	i.browser[c.ClientID] = c
}

func (i *Issuer) browserClient(id string) (BrowserClient, bool) {
	i.browserMu.RLock()
	defer i.browserMu.RUnlock()
	c, ok := i.browser[id]
	return c, ok
}

// allowedOrigin says whether origin is that of a registered redirect URI: the only pages that
// may call the token endpoint and read discovery from a browser.
func (i *Issuer) allowedOrigin(origin string) bool {
	if origin == "" {
		return false
	}
	i.browserMu.RLock()
	defer i.browserMu.RUnlock()
	for _, c := range i.browser {
		for _, r := range c.RedirectURIs {
			if u, err := url.Parse(r); err == nil && u.Scheme+"://"+u.Host == origin {
				return true
			}
		}
	}
	return false
}

// withCORS lets a registered portal's origin read the answer; a preflight is answered here.
func (i *Issuer) withCORS(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if i.allowedOrigin(origin) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions {
				h.Set("Access-Control-Allow-Methods", "GET, POST")
				h.Set("Access-Control-Allow-Headers", "Content-Type, Accept, DPoP")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		} else if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

// authorizeRequest is an authorization request whose client and redirect URI have been checked,
// so errors from here on may go back to the client by redirect.
type authorizeRequest struct {
	ClientID, RedirectURI, State, Nonce, Scope, CodeChallenge string
}

// authorizeError is an error shown on the issuer's own page, never redirected: the client or
// its redirect URI could not be trusted (RFC 6749 §4.1.2.1).
type authorizeError string

func (i *Issuer) parseAuthorize(form url.Values) (authorizeRequest, authorizeError, string) {
	req := authorizeRequest{
		ClientID: form.Get("client_id"), RedirectURI: form.Get("redirect_uri"), State: form.Get("state"),
		Nonce: form.Get("nonce"), Scope: form.Get("scope"), CodeChallenge: form.Get("code_challenge"),
	}
	client, ok := i.browserClient(req.ClientID)
	if !ok {
		return req, "unknown client_id", ""
	}
	if !slices.Contains(client.RedirectURIs, req.RedirectURI) {
		return req, "redirect_uri is not registered for this client", ""
	}
	switch {
	case form.Get("response_type") != "code":
		return req, "", "unsupported_response_type"
	case form.Get("code_challenge_method") != "S256" || !validChallenge(req.CodeChallenge):
		// PKCE is required, and only with S256: "plain" would give the code to whoever sees
		// the redirect.
		return req, "", "invalid_request"
	case !slices.Contains(strings.Fields(req.Scope), "openid"):
		return req, "", "invalid_scope"
	case len(req.State) > 512 || len(req.Nonce) > 512:
		return req, "", "invalid_request"
	}
	return req, "", ""
}

// validChallenge accepts an S256 challenge: the base64url of 32 bytes.
func validChallenge(c string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil && len(raw) == sha256.Size
}

// redirectWith sends the browser back to the client with params and the issuer (RFC 9207), so
// a client talking to several issuers can tell whose answer it got.
func (i *Issuer) redirectWith(w http.ResponseWriter, r *http.Request, req authorizeRequest, params url.Values) {
	params.Set("iss", i.url)
	if req.State != "" {
		params.Set("state", req.State)
	}
	sep := "?"
	if strings.Contains(req.RedirectURI, "?") {
		sep = "&"
	}
	http.Redirect(w, r, req.RedirectURI+sep+params.Encode(), http.StatusSeeOther)
}

var pickerPage = template.Must(template.New("picker").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>securemsg dev sign-in</title></head>
<body>
<main>
<h1>securemsg dev sign-in</h1>
<p>Dev stack only: choose who to be. A real identity provider asks for a password and a second factor here.</p>
<form method="post" action="/authorize">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}<ul>
{{range .Users}}<li><button type="submit" name="user" value="{{.Name}}" data-user="{{.Name}}">{{.Name}}</button> {{.DisplayName}} ({{range $n, $r := .Roles}}{{if $n}}, {{end}}{{$r}}{{end}})</li>
{{end}}</ul>
</form>
</main>
</body></html>
`))

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>securemsg dev sign-in</title></head>
<body><main><h1>Sign-in request refused</h1><p>{{.}}</p></main></body></html>
`))

// pageHeaders sets the issuer's page headers. redirectURI is the registered (already checked)
// redirect URI a picker's form leads to, or "" for an error page.
func pageHeaders(w http.ResponseWriter, redirectURI string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// The picker runs no script and loads nothing; its form posts only back here. Browsers hold
	// the redirect that answers the post to form-action as well, so the client's own origin is
	// listed too: without it the pick could never reach the portal.
	formAction := "'self'"
	if u, err := url.Parse(redirectURI); err == nil && redirectURI != "" {
		formAction += " " + u.Scheme + "://" + u.Host
	}
	h.Set("Content-Security-Policy", "default-src 'none'; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// authorize serves GET /authorize, the persona picker, and POST /authorize, the pick: the
// browser is sent back to the client with a one-time code bound to its PKCE challenge.
func (i *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		pageHeaders(w, "")
		w.WriteHeader(http.StatusBadRequest)
		_ = errorPage.Execute(w, "the request is not a form")
		return
	}
	form := r.Form
	if r.Method == http.MethodPost {
		form = r.PostForm
	}
	req, pageErr, redirectErr := i.parseAuthorize(form)
	if pageErr != "" {
		pageHeaders(w, "")
		w.WriteHeader(http.StatusBadRequest)
		_ = errorPage.Execute(w, string(pageErr))
		return
	}
	if redirectErr != "" {
		i.redirectWith(w, r, req, url.Values{"error": {redirectErr}})
		return
	}
	if r.Method == http.MethodGet {
		params := map[string]string{}
		for _, k := range []string{"client_id", "redirect_uri", "state", "nonce", "scope", "code_challenge", "code_challenge_method", "response_type"} {
			if v := form.Get(k); v != "" {
				params[k] = v
			}
		}
		users := make([]User, 0, len(Users))
		for _, n := range UserNames() {
			users = append(users, Users[n])
		}
		pageHeaders(w, req.RedirectURI)
		_ = pickerPage.Execute(w, map[string]any{"Params": params, "Users": users})
		return
	}
	user, ok := Users[form.Get("user")]
	if !ok {
		i.redirectWith(w, r, req, url.Values{"error": {"access_denied"}})
		return
	}
	scope := grantedScope(user, req.Scope)
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		i.redirectWith(w, r, req, url.Values{"error": {"server_error"}})
		return
	}
	code := base64.RawURLEncoding.EncodeToString(raw)
	now := i.now()
	if !i.codes.put(code, authorizationCode{
		clientID: req.ClientID, redirectURI: req.RedirectURI, codeChallenge: req.CodeChallenge,
		user: user.Name, scope: scope, nonce: req.Nonce, authTime: now, expires: now.Add(CodeTTL),
	}, now) {
		i.redirectWith(w, r, req, url.Values{"error": {"temporarily_unavailable"}})
		return
	}
	i.redirectWith(w, r, req, url.Values{"code": {code}})
}

// grantedScope is what the user gets of what the client asked: the asked scopes the user holds,
// or all of them when the client asked only for openid.
func grantedScope(user User, asked string) string {
	var out []string
	for _, s := range strings.Fields(asked) {
		if slices.Contains(user.Scopes, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		out = user.Scopes
	}
	return scopeString(out)
}

// tokenResponse is the answer to a successful code exchange.
type tokenResponse struct {
	accessToken, idToken, scope string
	expires                     time.Time
}

// authorizationCodeGrant exchanges a code: the public client names itself, repeats the
// redirect URI, and proves with the PKCE verifier that it is the tab that asked.
func (i *Issuer) authorizationCodeGrant(r *http.Request) (tokenResponse, error) {
	if _, _, basic := r.BasicAuth(); basic || r.PostForm.Has("client_secret") {
		return tokenResponse{}, &tokenError{http.StatusUnauthorized, "invalid_client", "a browser client has no secret"}
	}
	clientID := r.PostForm.Get("client_id")
	if _, ok := i.browserClient(clientID); !ok {
		return tokenResponse{}, &tokenError{http.StatusUnauthorized, "invalid_client", "client authentication failed"}
	}
	invalid := &tokenError{http.StatusBadRequest, "invalid_grant", "the code is unknown, used, expired or not this client's"}
	c, ok := i.codes.take(r.PostForm.Get("code"))
	now := i.now()
	if !ok || now.After(c.expires) || c.clientID != clientID || c.redirectURI != r.PostForm.Get("redirect_uri") {
		return tokenResponse{}, invalid
	}
	verifier := r.PostForm.Get("code_verifier")
	// RFC 7636 §4.1: 43 to 128 characters of the unreserved set.
	if len(verifier) < 43 || len(verifier) > 128 || strings.Trim(verifier, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != "" {
		return tokenResponse{}, invalid
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(c.codeChallenge)) != 1 {
		return tokenResponse{}, invalid
	}
	access, exp, err := i.Mint(c.user, MintOptions{Scope: c.scope, ClientID: clientID, AuthAge: now.Sub(c.authTime)})
	if err != nil {
		return tokenResponse{}, err
	}
	id, err := i.idToken(c, exp)
	if err != nil {
		return tokenResponse{}, err
	}
	return tokenResponse{accessToken: access, idToken: id, scope: c.scope, expires: exp}, nil
}

// idToken tells the client who signed in (OpenID Connect Core §2); the services never accept
// it: its audience is the client, not securemsg.
func (i *Issuer) idToken(c authorizationCode, exp time.Time) (string, error) {
	user := Users[c.user]
	now := i.now().Truncate(time.Second)
	b := jwt.NewBuilder().
		Issuer(i.url).
		Subject(user.Name).
		Audience([]string{c.clientID}).
		IssuedAt(now).
		Expiration(exp).
		Claim(ClaimAuthTime, c.authTime.Unix()).
		Claim(ClaimAMR, user.AMR).
		Claim(ClaimName, user.DisplayName).
		Claim(ClaimRoles, user.Roles)
	if c.nonce != "" {
		b = b.Claim("nonce", c.nonce)
	}
	return i.sign(b)
}
