package label

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestJoin(t *testing.T) {
	tests := []struct {
		name string
		a, b Label
		want Label
	}{
		{"bottom is the identity", Label{}, Client, Client},
		{"untrusted wins", Profile, Label{Untrusted, Public}, Label{Untrusted, Tenant}},
		{"more confidential wins", Label{Untrusted, Secret}, Label{Untrusted, Tenant}, Label{Untrusted, Secret}},
		{"trusted stays trusted", Profile, Label{Trusted, Public}, Profile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Join(tt.b); got != tt.want {
				t.Errorf("%v.Join(%v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
			if got := tt.b.Join(tt.a); got != tt.want {
				t.Errorf("join is not commutative: %v.Join(%v) = %v, want %v", tt.b, tt.a, got, tt.want)
			}
		})
	}
	if got := Of(Profile, Client, Result(Secret)); got != (Label{Untrusted, Secret}) {
		t.Errorf("Of = %v, want untrusted/secret", got)
	}
	if got := Of(); got != (Label{}) {
		t.Errorf("Of() = %v, want the zero label", got)
	}
}

// TestJoinNeverLowers checks, over the whole lattice, that a join is at
// least each side: nothing read later can lower what was read before.
func TestJoinNeverLowers(t *testing.T) {
	var all []Label
	for i := Trusted; i <= Untrusted; i++ {
		for c := Public; c <= Secret; c++ {
			all = append(all, Label{i, c})
		}
	}
	for _, a := range all {
		for _, b := range all {
			j := a.Join(b)
			if j.Integrity < a.Integrity || j.Confidentiality < a.Confidentiality {
				t.Errorf("%v.Join(%v) = %v, lower than %v", a, b, j, a)
			}
		}
	}
}

func TestAtMost(t *testing.T) {
	tests := []struct {
		c    Confidentiality
		want []string
	}{
		{Public, []string{"public"}},
		{Tenant, []string{"public", "tenant"}},
		{EndUser, []string{"public", "tenant", "end_user"}},
		{Secret, []string{"public", "tenant", "end_user", "secret"}},
	}
	for _, tt := range tests {
		if got := tt.c.AtMost(); !slices.Equal(got, tt.want) {
			t.Errorf("%v.AtMost() = %v, want %v", tt.c, got, tt.want)
		}
	}
}

func TestJSON(t *testing.T) {
	for i := Trusted; i <= Untrusted; i++ {
		for c := Public; c <= Secret; c++ {
			l := Label{i, c}
			b, err := json.Marshal(l)
			if err != nil {
				t.Fatal(err)
			}
			var back Label
			if err := json.Unmarshal(b, &back); err != nil || back != l {
				t.Errorf("round trip of %v: got %v, %v", l, back, err)
			}
		}
	}
	// A stored label that names no level is an error, never read as a
	// lower one.
	for _, bad := range []string{
		`{"integrity":"TRUSTED","confidentiality":"public"}`,
		`{"integrity":"trusted","confidentiality":"top"}`,
		`{"integrity":"","confidentiality":""}`,
		`{}`,
		`"trusted"`,
	} {
		var l Label
		if err := json.Unmarshal([]byte(bad), &l); err == nil {
			t.Errorf("Unmarshal(%s) = %v, want an error", bad, l)
		}
	}
}

func TestParseConfidentiality(t *testing.T) {
	for _, n := range []string{"public", "tenant", "end_user", "secret"} {
		c, err := ParseConfidentiality(n)
		if err != nil || c.String() != n {
			t.Errorf("ParseConfidentiality(%q) = %v, %v", n, c, err)
		}
	}
	for _, n := range []string{"", "Public", "end-user", "enduser", "secret "} {
		if _, err := ParseConfidentiality(n); err == nil {
			t.Errorf("ParseConfidentiality(%q): want an error", n)
		}
	}
}

func TestReserved(t *testing.T) {
	for _, n := range []string{"integrity", "confidentiality"} {
		if !Reserved(n) {
			t.Errorf("Reserved(%q) = false", n)
		}
	}
	for _, n := range []string{"amount", "Integrity", "labels", ""} {
		if Reserved(n) {
			t.Errorf("Reserved(%q) = true", n)
		}
	}
}
