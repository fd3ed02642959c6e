package redteam

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// client speaks Bulkhead's HTTP API, admin and tenant, and nothing else: the
// suite runs the same against an in-process server and a remote deployment.
type client struct {
	base  string
	admin string
	http  *http.Client
}

// response is one HTTP answer.
type response struct {
	status int
	body   []byte
}

func (r response) String() string {
	b := string(r.body)
	if len(b) > 200 {
		b = b[:200] + "…"
	}
	return fmt.Sprintf("%d %s", r.status, strings.TrimSpace(b))
}

// errorCode is the OpenAI error shape's code or type.
func (r response) errorCode() string {
	var e struct {
		Error struct{ Code, Type string }
	}
	if json.Unmarshal(r.body, &e) != nil {
		return ""
	}
	if e.Error.Code != "" {
		return e.Error.Code
	}
	return e.Error.Type
}

// do sends body (JSON-encoded unless it is a string) with bearer token tok.
func (c *client) do(ctx context.Context, method, path, tok string, body any, hdr map[string]string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return response{}, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{status: resp.StatusCode, body: raw}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return response{status: resp.StatusCode, body: raw}, nil
}

// adminDo is do with the admin token, failing on an unexpected status.
func (c *client) adminDo(ctx context.Context, method, path string, body any, want int) (response, error) {
	r, err := c.do(ctx, method, path, c.admin, body, nil)
	if err != nil {
		return r, err
	}
	if want != 0 && r.status != want {
		return r, fmt.Errorf("%s %s: got %v, want %d", method, path, r, want)
	}
	return r, nil
}

// chatReq is one chat completion.
type chatReq struct {
	key     string
	user    string
	session string
	text    string
	stream  bool
	model   string
	extra   map[string]any
	header  map[string]string
}

// reply is what a chat gave: the answer text, or the error body.
type reply struct {
	status int
	text   string
	raw    string
}

func (c *client) chat(ctx context.Context, q chatReq) (reply, error) {
	body := map[string]any{"messages": []map[string]string{{"role": "user", "content": q.text}}, "stream": q.stream}
	if q.user != "" {
		body["user"] = q.user
	}
	if q.model != "" {
		body["model"] = q.model
	}
	for k, v := range q.extra {
		body[k] = v
	}
	hdr := map[string]string{}
	for k, v := range q.header {
		hdr[k] = v
	}
	if q.session != "" {
		hdr["X-Session-Id"] = q.session
	}
	r, err := c.do(ctx, http.MethodPost, "/v1/chat/completions", q.key, body, hdr)
	rep := reply{status: r.status, raw: string(r.body), text: string(r.body)}
	if err != nil || r.status != http.StatusOK {
		return rep, err
	}
	if q.stream {
		rep.text = sseContent(r.body)
		return rep, nil
	}
	var c1 struct {
		Choices []struct {
			Message struct{ Content string }
		}
	}
	if json.Unmarshal(r.body, &c1) == nil && len(c1.Choices) > 0 {
		rep.text = c1.Choices[0].Message.Content
	}
	return rep, nil
}

// sseContent joins the content deltas of a streamed answer; an error event's
// body is kept as it came.
func sseContent(body []byte) string {
	var b strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var ev struct {
			Choices []struct {
				Delta struct{ Content string }
			}
			Error json.RawMessage
		}
		if json.Unmarshal([]byte(data), &ev) != nil {
			continue
		}
		if len(ev.Error) > 0 {
			b.WriteString(string(ev.Error))
		}
		for _, ch := range ev.Choices {
			b.WriteString(ch.Delta.Content)
		}
	}
	return b.String()
}

// Entry is one audit record, as the admin API gives it.
type Entry struct {
	Tenant string          `json:"tenant"`
	Seq    int64           `json:"seq"`
	Type   string          `json:"type"`
	Data   json.RawMessage `json:"data"`
}

func (e Entry) String() string {
	d := string(e.Data)
	if len(d) > 240 {
		d = d[:240] + "…"
	}
	return fmt.Sprintf("%s #%d %s %s", e.Tenant, e.Seq, e.Type, d)
}

// audit returns tenant's audit entries after seq, through the admin API.
func (c *client) audit(ctx context.Context, tenant string, after int64) ([]Entry, error) {
	r, err := c.adminDo(ctx, http.MethodGet, "/admin/v1/tenants/"+tenant+"/audit?after="+strconv.FormatInt(after, 10), nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var page struct{ Data []Entry }
	if err := json.Unmarshal(r.body, &page); err != nil {
		return nil, fmt.Errorf("decode audit of %s: %w", tenant, err)
	}
	for i := range page.Data {
		page.Data[i].Tenant = tenant
	}
	return page.Data, nil
}

// lastSeq returns the last sequence number of tenant's log.
func (c *client) lastSeq(ctx context.Context, tenant string) (int64, error) {
	recs, err := c.audit(ctx, tenant, 0)
	if err != nil {
		return 0, err
	}
	if len(recs) == 0 {
		return 0, nil
	}
	return recs[len(recs)-1].Seq, nil
}
