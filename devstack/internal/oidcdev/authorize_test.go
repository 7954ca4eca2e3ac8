package oidcdev

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// noRedirects is a client that hands back the issuer's redirect instead of following it, as
// the test plays the browser.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// pkcePair returns a verifier and its S256 challenge.
func pkcePair(seed string) (string, string) {
	verifier := strings.Repeat(seed, 43/len(seed)+1)[:43]
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeQuery is a well-formed authorization request of the portal.
func authorizeQuery(challenge string) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {ClientID}, "redirect_uri": {portalRedirect},
		"scope": {"openid messages.read messages.write audit.read"}, "state": {"st-1"}, "nonce": {"n-1"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
}

const portalRedirect = "http://127.0.0.1:8080/callback"

// pick posts the persona picker's form for user and returns the redirect's query.
func pick(t *testing.T, base string, q url.Values, user string) (int, url.Values) {
	t.Helper()
	form := url.Values{}
	for k, v := range q {
		form[k] = v
	}
	form.Set("user", user)
	resp, err := noRedirects.PostForm(base+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusSeeOther && loc.Scheme+"://"+loc.Host+loc.Path != portalRedirect {
		t.Fatalf("redirected to %q, want the registered redirect URI", loc)
	}
	return resp.StatusCode, loc.Query()
}

func exchange(t *testing.T, base, code, verifier string) (int, map[string]any) {
	t.Helper()
	status, body, hdr := postForm(t, base+"/token", url.Values{
		"grant_type": {"authorization_code"}, "client_id": {ClientID}, "redirect_uri": {portalRedirect},
		"code": {code}, "code_verifier": {verifier},
	}, "", "")
	if hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("token response Cache-Control = %q, want no-store", hdr.Get("Cache-Control"))
	}
	return status, body
}

// TestAuthorizationCodeWithPKCE signs the patient in the way the portal does: discovery names
// the endpoints, the picker lists the personas, the pick redirects back with a code, state and
// iss, and the code with its verifier buys an access token for securemsg (the person's claims,
// the asked scopes the person holds, a login time) and an ID token for the portal (its nonce).
// The code is good once.
func TestAuthorizationCodeWithPKCE(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)

	var disco struct {
		Authorize  string   `json:"authorization_endpoint"`
		Token      string   `json:"token_endpoint"`
		Methods    []string `json:"code_challenge_methods_supported"`
		Responses  []string `json:"response_types_supported"`
		AuthMethod []string `json:"token_endpoint_auth_methods_supported"`
		IssParam   bool     `json:"authorization_response_iss_parameter_supported"`
	}
	getJSON(t, http.MethodGet, srv.URL+"/.well-known/openid-configuration", &disco)
	if disco.Authorize != srv.URL+"/authorize" || !slices.Equal(disco.Methods, []string{"S256"}) ||
		!slices.Equal(disco.Responses, []string{"code"}) || !slices.Contains(disco.AuthMethod, "none") || !disco.IssParam {
		t.Fatalf("discovery = %+v, want the code flow with S256 for public clients", disco)
	}

	verifier, challenge := pkcePair("verifier-of-the-patient-tab")
	q := authorizeQuery(challenge)
	resp, err := http.Get(disco.Authorize + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	// The pick's answer redirects to the portal, which browsers check against form-action too:
	// the portal's origin must be listed, and nothing else besides the issuer.
	const wantCSP = "default-src 'none'; form-action 'self' http://127.0.0.1:8080; frame-ancestors 'none'; base-uri 'none'"
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") != wantCSP {
		t.Fatalf("picker = %d, CSP %q, want %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"), wantCSP)
	}
	for _, name := range UserNames() {
		if !strings.Contains(string(page), `data-user="`+name+`"`) {
			t.Fatalf("picker does not offer %s", name)
		}
	}

	status, back := pick(t, srv.URL, q, "patient")
	if status != http.StatusSeeOther || back.Get("code") == "" || back.Get("state") != "st-1" || back.Get("iss") != srv.URL {
		t.Fatalf("pick = %d %v, want a redirect with code, state and iss", status, back)
	}
	status, body := exchange(t, srv.URL, back.Get("code"), verifier)
	if status != http.StatusOK || body["token_type"] != "Bearer" {
		t.Fatalf("exchange = %d %v", status, body)
	}
	// The patient holds messages.*, not audit.read: what they get is what they hold of it.
	if body["scope"] != "messages.read messages.write" {
		t.Fatalf("scope = %v, want the asked scopes the patient holds", body["scope"])
	}
	set, err := jwk.Fetch(t.Context(), srv.URL+"/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	access, err := jwt.Parse([]byte(body["access_token"].(string)), jwt.WithKeySet(set), jwt.WithIssuer(srv.URL), jwt.WithAudience(Audience), jwt.WithValidate(true))
	if err != nil {
		t.Fatalf("access token: %v", err)
	}
	var clientID, patientID string
	var authTime float64
	_ = access.Get(ClaimClientID, &clientID)
	_ = access.Get(ClaimPatientID, &patientID)
	_ = access.Get(ClaimAuthTime, &authTime)
	if sub, _ := access.Subject(); sub != "patient" || clientID != ClientID || patientID != "p-1001" || time.Since(time.Unix(int64(authTime), 0)) > time.Minute {
		t.Fatalf("access token sub %q client %q patient %q auth_time %v", sub, clientID, patientID, authTime)
	}
	id, err := jwt.Parse([]byte(body["id_token"].(string)), jwt.WithKeySet(set), jwt.WithIssuer(srv.URL), jwt.WithAudience(ClientID), jwt.WithValidate(true))
	if err != nil {
		t.Fatalf("id token: %v", err)
	}
	var nonce string
	if err := id.Get("nonce", &nonce); err != nil || nonce != "n-1" {
		t.Fatalf("id token nonce = %q (%v), want n-1", nonce, err)
	}
	if _, err := jwt.Parse([]byte(body["id_token"].(string)), jwt.WithKeySet(set), jwt.WithAudience(Audience), jwt.WithValidate(true)); err == nil {
		t.Fatal("the ID token is accepted with audience securemsg; the services must never take it")
	}

	if status, body := exchange(t, srv.URL, back.Get("code"), verifier); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("second exchange of a code = %d %v, want invalid_grant", status, body)
	}
}

// TestAuthorizationRefusals: a request whose client or redirect URI cannot be trusted is
// refused on the issuer's page, never redirected; one without S256 PKCE, without openid or
// with another response type goes back with the OAuth error; an exchange with the wrong
// verifier, redirect URI or client, or after the code expired, is invalid_grant, and burns the
// code.
func TestAuthorizationRefusals(t *testing.T) {
	t.Parallel()
	// The handler reads the clock on the server's goroutines: the skew is atomic.
	var skew atomic.Int64
	srv := newTestServer(t, func(i *Issuer) { i.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) } })
	_, challenge := pkcePair("another-tab")

	for name, change := range map[string]func(url.Values){
		"unknown client":          func(q url.Values) { q.Set("client_id", "stranger") },
		"unregistered redirect":   func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:9999/callback") },
		"redirect with more path": func(q url.Values) { q.Set("redirect_uri", portalRedirect+"/../evil") },
	} {
		q := authorizeQuery(challenge)
		change(q)
		resp, err := noRedirects.Get(srv.URL + "/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d Location %q, want 400 on the issuer's page", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	for name, tc := range map[string]struct {
		change func(url.Values)
		want   string
	}{
		"no PKCE":        {func(q url.Values) { q.Del("code_challenge") }, "invalid_request"},
		"plain PKCE":     {func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		"short":          {func(q url.Values) { q.Set("code_challenge", "abc") }, "invalid_request"},
		"no openid":      {func(q url.Values) { q.Set("scope", "messages.read") }, "invalid_scope"},
		"implicit":       {func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		"unknown person": {func(q url.Values) { q.Set("user", "mallory") }, "access_denied"},
	} {
		q := authorizeQuery(challenge)
		tc.change(q)
		user := q.Get("user")
		if user == "" {
			user = "patient"
		}
		q.Del("user")
		status, back := pick(t, srv.URL, q, user)
		if status != http.StatusSeeOther || back.Get("error") != tc.want || back.Get("code") != "" || back.Get("state") != "st-1" {
			t.Errorf("%s: %d %v, want a redirect with error %s and no code", name, status, back, tc.want)
		}
	}

	verifier, challenge := pkcePair("the-right-tab")
	codeFor := func() string {
		_, back := pick(t, srv.URL, authorizeQuery(challenge), "clinician")
		return back.Get("code")
	}
	wrongVerifier, _ := pkcePair("a-thief")
	code := codeFor()
	if status, body := exchange(t, srv.URL, code, wrongVerifier); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("wrong verifier = %d %v, want invalid_grant", status, body)
	}
	if status, _ := exchange(t, srv.URL, code, verifier); status != http.StatusBadRequest {
		t.Fatal("the code still works after a failed exchange; it must be burnt")
	}
	code = codeFor()
	status, body, _ := postForm(t, srv.URL+"/token", url.Values{
		"grant_type": {"authorization_code"}, "client_id": {ClientID}, "redirect_uri": {"http://127.0.0.1:8080/other"},
		"code": {code}, "code_verifier": {verifier},
	}, "", "")
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("another redirect_uri = %d %v, want invalid_grant", status, body)
	}
	status, body, _ = postForm(t, srv.URL+"/token", url.Values{
		"grant_type": {"authorization_code"}, "client_id": {"stranger"}, "code": {codeFor()}, "code_verifier": {verifier},
	}, "", "")
	if status != http.StatusUnauthorized || body["error"] != "invalid_client" {
		t.Fatalf("unknown client = %d %v, want invalid_client", status, body)
	}
	code = codeFor()
	skew.Store(int64(CodeTTL + time.Second))
	if status, body := exchange(t, srv.URL, code, verifier); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("expired code = %d %v, want invalid_grant", status, body)
	}
}

// TestBrowserCORS: the portal's origin (that of a registered redirect URI) may read discovery
// and call the token endpoint from its page; any other origin gets no CORS grant, and its
// preflight is refused.
func TestBrowserCORS(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	for _, tc := range []struct {
		method, path, origin string
		status               int
		allowed              bool
	}{
		{http.MethodGet, "/.well-known/openid-configuration", "http://127.0.0.1:8080", http.StatusOK, true},
		{http.MethodOptions, "/token", "http://127.0.0.1:8080", http.StatusNoContent, true},
		{http.MethodGet, "/jwks.json", "http://127.0.0.1:8081", http.StatusOK, false},
		{http.MethodOptions, "/token", "http://evil.example", http.StatusForbidden, false},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, nil)
		req.Header.Set("Origin", tc.origin)
		req.Header.Set("Access-Control-Request-Method", http.MethodPost)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		got := resp.Header.Get("Access-Control-Allow-Origin")
		if resp.StatusCode != tc.status || (got == tc.origin) != tc.allowed || (got != "" && got != tc.origin) {
			t.Errorf("%s %s from %s = %d, allow-origin %q; want %d, allowed %v", tc.method, tc.path, tc.origin, resp.StatusCode, got, tc.status, tc.allowed)
		}
	}
}

func TestParseRedirectURIs(t *testing.T) {
	t.Parallel()
	got, err := ParseRedirectURIs(" http://127.0.0.1:8080/callback, https://[::1]:5173/cb ")
	if err != nil || !slices.Equal(got, []string{"http://127.0.0.1:8080/callback", "https://[::1]:5173/cb"}) {
		t.Fatalf("ParseRedirectURIs() = %v, %v", got, err)
	}
	for _, bad := range []string{"", "http://portal.example/cb", "http://127.0.0.1:8080/cb#frag", "javascript:alert(1)", "/callback", "http://u:p@127.0.0.1/cb"} {
		if _, err := ParseRedirectURIs(bad); err == nil {
			t.Errorf("ParseRedirectURIs(%q) accepted", bad)
		}
	}
}
