package redteam

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// midRequest runs one turn that waits and then calls a tool, and revokes
// the key, suspends the tenant or deletes and re-creates it while the turn
// waits.
func (w *world) midRequest(ctx context.Context, t *trial, op string) error {
	id := w.prefix + "-" + strings.SplitN(op, "_", 2)[0]
	body := map[string]any{"id": id, "model": w.model, "tools": []string{w.tool(toolCRM)}}
	if err := w.createTenant(ctx, body); err != nil {
		return err
	}
	keyID, key, err := w.newKey(ctx, id)
	if err != nil {
		return err
	}
	if _, err := w.c.adminDo(ctx, http.MethodPut, "/admin/v1/tenants/"+id+"/secrets/crm_token", map[string]string{"value": randomToken()}, http.StatusNoContent); err != nil {
		return err
	}
	nonce := "late-" + w.prefix + "-" + strings.ReplaceAll(randomWords(2), " ", "-")
	seq, err := w.mark(ctx, id)
	if err != nil {
		return err
	}
	m := w.tools.mark()
	a := t.attempt(op)
	done := make(chan reply, 1)
	go func() {
		rep, _ := w.c.chat(ctx, chatReq{key: key, user: endUser, session: "s1", stream: true,
			text: "turn " + nonce + "\n!rt sleep 1500\n" + call(w.tool(toolCRM), `{"customer":"`+nonce+`"}`)})
		done <- rep
	}()
	select {
	case <-time.After(400 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	switch op {
	case "revoke_key_mid_request":
		_, err = w.c.adminDo(ctx, http.MethodDelete, "/admin/v1/tenants/"+id+"/keys/"+keyID, nil, 0)
	case "suspend_tenant_mid_request":
		_, err = w.c.adminDo(ctx, http.MethodPatch, "/admin/v1/tenants/"+id, map[string]any{"status": "suspended"}, http.StatusOK)
	case "delete_tenant_mid_request":
		if _, err = w.c.adminDo(ctx, http.MethodDelete, "/admin/v1/tenants/"+id, nil, 0); err == nil {
			err = w.createTenant(ctx, body)
		}
	}
	if err != nil {
		return err
	}
	rep := <-done
	// Give a turn that was not stopped the time to finish its tool call.
	time.Sleep(1500 * time.Millisecond)
	for _, s := range w.tools.since(m) {
		if strings.Contains(s.body, nonce) {
			a.leak("the tool server received the turn's call after %s: %s", op, s.path)
		}
	}
	if strings.Contains(rep.text, "Tool results") {
		a.leak("the turn ran its tool loop to the end: %s", excerpt(rep.text))
	}
	a.http("the turn ended: %d …%s", rep.status, rep.raw[max(0, len(rep.raw)-200):])
	if op == "delete_tenant_mid_request" {
		_, k2, err := w.newKey(ctx, id)
		if err != nil {
			return err
		}
		h, err := w.c.chat(ctx, chatReq{key: k2, user: endUser, session: "s1", text: "!rt echo"})
		if err != nil {
			return err
		}
		if strings.Contains(h.text, nonce) {
			a.leak("the new incarnation's session holds the old turn: %s", excerpt(h.text))
		}
		return nil
	}
	_, err = w.proof(ctx, a, id, seq, "key.", "tenant.")
	return err
}

// mixup runs concurrent streamed turns of A and B on the same session ids,
// cancels half of them, and checks that every answer and history holds only
// its own requester's nonces.
func (w *world) mixup(ctx context.Context, t *trial) error {
	const perTenant = 16
	type turn struct {
		tenant, key, session, nonce string
		cancel                      bool
		rep                         reply
		err                         error
	}
	var turns []*turn
	for _, tn := range []tenantInfo{w.a, w.b} {
		for i := range perTenant {
			turns = append(turns, &turn{tenant: tn.id, key: tn.key, session: fmt.Sprintf("mix-%d", i),
				nonce: fmt.Sprintf("nonce%s%s%d", w.prefix, tn.id[len(tn.id)-3:], i), cancel: i%2 == 1})
		}
	}
	var wg sync.WaitGroup
	for _, tu := range turns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx := ctx
			if tu.cancel {
				var cancel context.CancelFunc
				cctx, cancel = context.WithTimeout(ctx, 80*time.Millisecond)
				defer cancel()
			}
			tu.rep, tu.err = w.c.chat(cctx, chatReq{key: tu.key, user: endUser, session: tu.session, stream: true,
				text: "!rt drip 15 answer for " + tu.nonce + " one two three four five six seven eight nine ten"})
		}()
	}
	wg.Wait()
	others := func(self *turn, hay string) string {
		for _, o := range turns {
			if o != self && strings.Contains(hay, o.nonce+" ") {
				return o.nonce
			}
		}
		return ""
	}
	a := t.attempt(fmt.Sprintf("%d concurrent streamed turns, %d cancelled", len(turns), len(turns)/2))
	answers, histories := 0, 0
	for _, tu := range turns {
		if tu.cancel || tu.err != nil {
			continue
		}
		answers++
		if !strings.Contains(tu.rep.text, tu.nonce) {
			a.leak("%s %s got an answer without its own nonce: %s", tu.tenant, tu.session, excerpt(tu.rep.text))
		}
		if o := others(tu, tu.rep.text); o != "" {
			a.leak("%s %s got another turn's answer (%s)", tu.tenant, tu.session, o)
		}
	}
	// Let cancelled turns settle before reading the histories.
	time.Sleep(300 * time.Millisecond)
	for _, tu := range turns {
		h, err := w.c.chat(ctx, chatReq{key: tu.key, user: endUser, session: tu.session, text: "!rt echo"})
		if err != nil {
			return err
		}
		histories++
		if o := others(tu, h.text); o != "" {
			a.leak("%s's session %s holds another turn's text (%s)", tu.tenant, tu.session, o)
		}
	}
	a.http("%d complete answers and %d session histories each hold only their own turn", answers, histories)
	return nil
}
