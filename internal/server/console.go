package server

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/websession"
)

// The console at /console: server-rendered pages over the same functions
// the admin API's handlers call. The operator signs in with the admin token
// and sees every tenant; a tenant signs in with one of its API keys and sees
// its own tenant only, read-only: every change is the operator's.

//go:embed console
var consoleFiles embed.FS

// consoleMaxForm bounds a console form: room for the largest policy.
const consoleMaxForm = 1 << 20

// consoleCookie is the session cookie's name.
const consoleCookie = "bulkhead_console"

// consoleCSP allows the console's own script and style files and nothing
// inline: a page that shows text an attacker chose cannot run it.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

var consolePages = parseConsolePages()

func parseConsolePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"fmtTime": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				return v.UTC().Format("2006-01-02 15:04 UTC")
			case *time.Time:
				if v != nil {
					return v.UTC().Format("2006-01-02 15:04 UTC")
				}
			}
			return ""
		},
		"join": func(s []string) string { return strings.Join(s, ", ") },
	}
	layout := template.Must(template.New("layout").Funcs(funcs).ParseFS(consoleFiles, "console/layout.html"))
	pages := map[string]*template.Template{}
	for _, name := range []string{"signin", "error", "tenants", "tenant", "keys", "usage", "audit"} {
		pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(consoleFiles, "console/"+name+".html"))
	}
	return pages
}

// consoleView is what every console page renders.
type consoleView struct {
	Title   string
	Session websession.Session
	CSRF    string
	// Tenant is the tenant the page is about, if any; Tab is its tab.
	Tenant control.Tenant
	Tab    string
	Flash  string
	Error  string
	Data   any
}

type consoleSessionKey struct{}

// consoleSession returns the session the console middleware admitted.
func consoleSession(ctx context.Context) (websession.Session, bool) {
	s, ok := ctx.Value(consoleSessionKey{}).(websession.Session)
	return s, ok
}

// consoleHeaders sets the headers every console response carries.
func consoleHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// render writes page with status.
func render(d Deps, w http.ResponseWriter, r *http.Request, status int, page string, v consoleView) {
	if s, ok := consoleSession(r.Context()); ok {
		v.Session = s
		v.CSRF = d.Auth.ConsoleSessions().CSRF(s)
	}
	t, ok := consolePages[page]
	if !ok {
		consoleError(d, w, r, fmt.Errorf("no console page %q", page))
		return
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		d.Logger.ErrorContext(r.Context(), "console page failed", "page", page, "error", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprint(w, b.String())
}

// consoleError renders err as a page with the status errorStatus gives it,
// and logs it as the API logs its failures.
func consoleError(d Deps, w http.ResponseWriter, r *http.Request, err error) {
	r = withRequestID(w, r)
	status, _, code, message := errorStatus(err)
	logFailure(d.Logger, r, "console request failed", status, code, err)
	render(d, w, r, status, "error", consoleView{Title: http.StatusText(status), Error: message,
		Data: map[string]any{"Status": status, "Text": http.StatusText(status)}})
}

// errForbidden is a console change refused for its missing or wrong
// anti-forgery token or foreign origin.
var errForbidden = fmt.Errorf("%w: the form is stale or came from another site; reload the page and try again", kind.Denied)

// sameOrigin reports whether r came from the console's own pages, as far
// as the browser says: Sec-Fetch-Site when it sends one, else the Origin
// header if present. With Referrer-Policy no-referrer a browser's form posts
// carry "Origin: null", so that alone proves nothing and is refused.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	scheme := "http"
	if overTLS(r) {
		scheme = "https"
	}
	return u.Scheme == scheme && u.Host == r.Host
}

// overTLS reports whether the browser reached the console over TLS: here,
// or at a proxy that terminated it and said so in X-Forwarded-Proto. The
// header can only make the cookie stricter (Secure) or the origin check
// expect https; a page of another site cannot set it on a form post.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

// requireConsole admits requests with a valid session, puts it and what it
// grants (the operator's mark or the tenant's Scope) in the context, and
// checks every POST's anti-forgery token and origin before the handler runs,
// so a refused change changes nothing. Without a session a GET goes to the
// sign-in page and a POST is refused.
func requireConsole(d Deps) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := r.Cookie(consoleCookie)
			var ctx context.Context
			var s websession.Session
			if err == nil {
				ctx, s, err = d.Auth.Session(r.Context(), c.Value)
			}
			if err != nil {
				if c != nil {
					auditRefused(d, err)
					clearConsoleCookie(w, r)
				}
				if r.Method == http.MethodGet {
					http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
					return
				}
				consoleError(d, w, r, fmt.Errorf("%w: sign in again", kind.Unauthenticated))
				return
			}
			ctx = context.WithValue(ctx, consoleSessionKey{}, s)
			r = r.WithContext(ctx)
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				r.Body = http.MaxBytesReader(w, r.Body, consoleMaxForm)
				codec := d.Auth.ConsoleSessions()
				if !sameOrigin(r) || !codec.CheckCSRF(s, r.PostFormValue("csrf")) {
					consoleError(d, w, r, errForbidden)
					return
				}
			}
			if scope, ok := auth.FromContext(ctx); ok && scope.Key() != "" {
				d.Tenants.KeyUsed(scope.Key())
			}
			next.ServeHTTP(w, r)
		})
	}
}

// operatorOnly serves the operator's pages; to a tenant session they do not
// exist.
func operatorOnly(d Deps, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s, ok := consoleSession(r.Context()); !ok || !s.Operator {
			consoleError(d, w, r, fmt.Errorf("%w: no such page", kind.NotFound))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// consoleTenant is the one place a console page's {tenant} becomes a Scope:
// the operator's AdminScope in the tenant the path names, or the tenant
// session's own Scope when the path names its own tenant. Any other tenant
// is not found, exactly like a missing one.
func consoleTenant(d Deps, r *http.Request) (auth.Scope, control.Tenant, error) {
	var none auth.Scope
	id, err := pathTenant(r)
	if err != nil {
		return none, control.Tenant{}, err
	}
	notFound := fmt.Errorf("%w: tenant %s", kind.NotFound, id)
	if scope, ok := auth.FromContext(r.Context()); ok {
		if scope.Tenant() != id {
			return none, control.Tenant{}, notFound
		}
		t, err := d.Tenants.Tenant(id)
		if err != nil || t.Incarnation() != scope.Incarnation() {
			return none, control.Tenant{}, notFound
		}
		return scope, t, nil
	}
	t, err := d.Tenants.Tenant(id)
	if err != nil {
		return none, control.Tenant{}, err
	}
	scope, err := auth.AdminScope(r.Context(), t.Incarnation())
	if err != nil {
		// Neither a tenant's Scope nor the operator's mark: fail closed.
		return none, control.Tenant{}, notFound
	}
	return scope, t, nil
}

// auditRefused counts a refused credential into its tenant's audit log, as
// the API does for refused keys.
func auditRefused(d Deps, err error) {
	if id, ok := auth.RefusedTenant(err); ok && d.AuditRefused != nil {
		key, _ := auth.RefusedKey(err)
		d.AuditRefused.Add(id, key, "console: "+err.Error())
	}
}

func setConsoleCookie(w http.ResponseWriter, r *http.Request, value string) {
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: value, Path: "/console",
		MaxAge: int(websession.Lifetime / time.Second), HttpOnly: true, Secure: overTLS(r), SameSite: http.SameSiteStrictMode})
}

func clearConsoleCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: "", Path: "/console",
		MaxAge: -1, HttpOnly: true, Secure: overTLS(r), SameSite: http.SameSiteStrictMode})
}

// signInLimiter bounds sign-in attempts per client address, so the admin
// token and tenant keys cannot be guessed at speed through the form.
type signInLimiter struct {
	mu  sync.Mutex
	per map[string]*rate.Limiter
}

// maxSignInClients bounds the limiter's memory; past it, the table starts
// over (an attacker with that many addresses gains a fresh burst, no more).
const maxSignInClients = 10_000

func (l *signInLimiter) allow(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.per == nil || len(l.per) >= maxSignInClients {
		l.per = map[string]*rate.Limiter{}
	}
	lim, ok := l.per[host]
	if !ok {
		lim = rate.NewLimiter(rate.Every(2*time.Second), 10)
		l.per[host] = lim
	}
	return lim.Allow()
}

func handleConsoleSignInPage(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		render(d, w, r, http.StatusOK, "signin", consoleView{Title: "Sign in"})
	})
}

func handleConsoleSignIn(d Deps) http.Handler {
	limiter := &signInLimiter{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sameOrigin(r) {
			consoleError(d, w, r, errForbidden)
			return
		}
		if !limiter.allow(r) {
			d.Logger.WarnContext(r.Context(), "console sign-in rate limited", "remote", r.RemoteAddr)
			render(d, w, r, http.StatusTooManyRequests, "signin", consoleView{Title: "Sign in", Error: "Too many sign-in attempts; wait a minute."})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		s, err := d.Auth.SignIn(strings.TrimSpace(r.PostFormValue("credential")))
		if err != nil {
			auditRefused(d, err)
			status, _, code, _ := errorStatus(err)
			if status == http.StatusInternalServerError {
				logFailure(d.Logger, withRequestID(w, r), "console sign-in failed", status, code, err)
			} else {
				d.Logger.WarnContext(r.Context(), "console sign-in refused", "remote", r.RemoteAddr, "error", err.Error())
			}
			// One message for every refusal: which part was wrong is no
			// business of whoever is guessing.
			render(d, w, r, http.StatusUnauthorized, "signin", consoleView{Title: "Sign in", Error: "Sign-in failed: that is not a valid admin token or active API key."})
			return
		}
		value, err := d.Auth.ConsoleSessions().Seal(s)
		if err != nil {
			consoleError(d, w, r, err)
			return
		}
		setConsoleCookie(w, r, value)
		who := "operator"
		if !s.Operator {
			who = "tenant"
		}
		d.Logger.InfoContext(r.Context(), "console sign-in", "principal", who, "tenant", s.Tenant, "key_id", s.Key)
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
	})
}

func handleConsoleSignOut(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clearConsoleCookie(w, r)
		http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
	})
}

// handleConsoleHome sends the operator to the tenants and a tenant to its
// own page.
func handleConsoleHome(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := consoleSession(r.Context())
		if s.Operator {
			http.Redirect(w, r, "/console/tenants", http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, "/console/tenants/"+url.PathEscape(string(s.Tenant)), http.StatusSeeOther)
	})
}

// handleConsoleAssets serves the embedded style sheet and script.
func handleConsoleAssets() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if name != "console.css" && name != "console.js" {
			http.NotFound(w, r)
			return
		}
		http.ServeFileFS(w, r, consoleFiles, "console/"+name)
	})
}
