package redteam

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"time"
)

// Summary is the report's last line.
func (r Report) Summary() string {
	return fmt.Sprintf("scenarios: %d  attempts: %d  blocked: %d  leaked: %d", r.Scenarios, r.Attempts, r.Blocked, r.Leaked)
}

// WriteText prints the report: per scenario its attempts, what blocked each
// (the evidence) or what got out, then the summary line.
func (r Report) WriteText(w io.Writer) error {
	var err error
	p := func(format string, args ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, args...)
		}
	}
	p("Bulkhead red team against %s (tenants %s-*)\n\n", r.Target, r.Prefix)
	for i, res := range r.Results {
		verdict := "BLOCKED"
		if res.Leaked() {
			verdict = "LEAKED"
		}
		blocked := 0
		for _, a := range res.Attempts {
			if !a.Leaked {
				blocked++
			}
		}
		p("%2d. %-40s %-7s attempts %d, blocked %d  [%s; %s]\n", i+1, res.Name, verdict, len(res.Attempts), blocked, res.Layer, res.Threat)
		if res.Error != "" {
			p("      ERROR %s\n", res.Error)
		}
		for _, a := range res.Attempts {
			if a.Leaked {
				p("      LEAK  %s: %s\n", a.What, a.Detail)
				continue
			}
			p("      ok    %s\n", a.What)
			for j, e := range a.Evidence {
				if j == 3 {
					p("            … %d more\n", len(a.Evidence)-3)
					break
				}
				p("            %s: %s\n", e.Source, e.Text)
			}
		}
	}
	p("\n%s  (%s)\n", r.Summary(), r.Duration.Round(time.Millisecond))
	return err
}

// WriteJSON writes the report as JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write JSON report: %w", err)
	}
	return nil
}

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"inc":   func(i int) int { return i + 1 },
	"round": func(d time.Duration) time.Duration { return d.Round(time.Millisecond) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bulkhead red team: {{.Summary}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}
.leak{background:#fdd}.ok{background:#efe}code,pre{font:12px ui-monospace,monospace;white-space:pre-wrap;word-break:break-all;margin:0}
</style></head><body>
<h1>Bulkhead red team</h1>
<p>Target <code>{{.Target}}</code>, tenants <code>{{.Prefix}}-*</code>, started {{.Started.Format "2006-01-02 15:04:05 UTC"}}, took {{round .Duration}}.</p>
<p><strong>{{.Summary}}</strong></p>
<table><tr><th>#</th><th>scenario</th><th>threat</th><th>enforcement point</th><th>attempts</th></tr>
{{range $i, $r := .Results}}<tr class="{{if $r.Leaked}}leak{{else}}ok{{end}}"><td>{{inc $i}}</td>
<td><strong>{{$r.Name}}</strong><br>{{$r.Setup}}<br><em>attack:</em> {{$r.Attack}}<br><em>check:</em> {{$r.Check}}</td>
<td>{{$r.Threat}}</td><td>{{$r.Layer}}</td><td>{{if $r.Error}}<p>ERROR {{$r.Error}}</p>{{end}}
{{range $r.Attempts}}<p>{{if .Leaked}}<strong>LEAK</strong> {{.What}}: <code>{{.Detail}}</code>{{else}}blocked: {{.What}}{{range .Evidence}}<pre>{{.Source}}: {{.Text}}</pre>{{end}}{{end}}</p>{{end}}</td></tr>
{{end}}</table></body></html>
`))

// WriteHTML writes a self-contained HTML report.
func (r Report) WriteHTML(w io.Writer) error {
	if err := htmlReport.Execute(w, r); err != nil {
		return fmt.Errorf("write HTML report: %w", err)
	}
	return nil
}
