package upstream

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestRetryable(t *testing.T) {
	for status := 100; status < 600; status++ {
		want := status == 429 || status == 500 || status == 502 || status == 503 || status == 504
		if got := retryable(status); got != want {
			t.Errorf("retryable(%d) = %t, want %t", status, got, want)
		}
	}
}

func TestStatusHint(t *testing.T) {
	tests := []struct {
		status     int
		retryAfter string
		want       *Hint
	}{
		{status: 200},
		{status: 307},
		{status: 400, retryAfter: "1"},
		{status: 401},
		{status: 422},
		{status: 501},
		{status: 429, want: &Hint{}},
		{status: 429, retryAfter: "0", want: &Hint{After: 0, HasAfter: true}},
		{status: 503, retryAfter: "3", want: &Hint{After: 3 * time.Second, HasAfter: true}},
		{status: 500, retryAfter: "3600", want: &Hint{After: 10 * time.Second, HasAfter: true}},
		{status: 502, retryAfter: "soon", want: &Hint{}},
		{status: 504, want: &Hint{}},
	}
	for _, tt := range tests {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
		if tt.retryAfter != "" {
			resp.Header.Set("Retry-After", tt.retryAfter)
		}
		got := StatusHint(resp)
		if (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
			t.Errorf("StatusHint(%d, Retry-After %q) = %+v, want %+v", tt.status, tt.retryAfter, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	const limit = 10 * time.Second
	tests := []struct {
		v      string
		want   time.Duration
		wantOK bool
	}{
		{v: ""},
		{v: "   "},
		{v: "-1"},
		{v: "1.5"},
		{v: "soon"},
		{v: "0", wantOK: true},
		{v: "3", want: 3 * time.Second, wantOK: true},
		{v: " 7 ", want: 7 * time.Second, wantOK: true},
		{v: "10", want: limit, wantOK: true},
		{v: "11", want: limit, wantOK: true},
		{v: "99999999999999999999", wantOK: false},                  // overflows Atoi and is no date
		{v: "Mon, 02 Jan 2006 15:04:05 GMT", want: 0, wantOK: true}, // in the past
		{v: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), want: limit, wantOK: true},
	}
	for _, tt := range tests {
		got, ok := retryAfter(tt.v, limit)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("retryAfter(%q) = %s, %t; want %s, %t", tt.v, got, ok, tt.want, tt.wantOK)
		}
	}

	// A date a few seconds ahead waits about that long.
	v := time.Now().Add(5 * time.Second).UTC().Format(http.TimeFormat)
	if got, ok := retryAfter(v, limit); !ok || got <= 3*time.Second || got > 5*time.Second {
		t.Errorf("retryAfter(%q) = %s, %t; want about 4-5s", v, got, ok)
	}
}

func TestBackoff(t *testing.T) {
	const base, limit = 200 * time.Millisecond, 5 * time.Second
	tests := []struct {
		attempt int
		full    time.Duration // before jitter
	}{
		{0, 200 * time.Millisecond},
		{1, 400 * time.Millisecond},
		{2, 800 * time.Millisecond},
		{4, 3200 * time.Millisecond},
		{5, limit},
		{29, limit},
		{30, limit},
		{1000, limit}, // no overflow
	}
	for _, tt := range tests {
		for range 50 {
			got := backoff(tt.attempt, base, limit)
			if got < tt.full/2 || got > tt.full {
				t.Fatalf("backoff(%d) = %s, want between %s and %s", tt.attempt, got, tt.full/2, tt.full)
			}
		}
	}
}

func TestSleep(t *testing.T) {
	if err := sleep(context.Background(), 0); err != nil {
		t.Errorf("sleep(0) = %v, want nil", err)
	}
	if err := sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("sleep(1ms) = %v, want nil", err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, d := range []time.Duration{-time.Second, 0, time.Hour} {
		if err := sleep(done, d); !errors.Is(err, context.Canceled) {
			t.Errorf("sleep(cancelled, %s) = %v, want context.Canceled", d, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	if err := sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("sleep cancelled midway = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("sleep returned after %s, want promptly", d)
	}
}

func TestRetry(t *testing.T) {
	errBusy := errors.New("busy")
	errBad := errors.New("bad request")
	retry := &Hint{}
	type result struct {
		hint *Hint
		err  error
	}
	ok := result{}
	tests := []struct {
		name      string
		retries   int
		results   []result
		wantCalls int
		wantErr   error
	}{
		{name: "first try", retries: 2, results: []result{ok}, wantCalls: 1},
		{name: "retryable then ok", retries: 2, results: []result{{retry, errBusy}, ok}, wantCalls: 2},
		{name: "retry-after 0 then ok", retries: 2, results: []result{{&Hint{HasAfter: true}, errBusy}, ok}, wantCalls: 2},
		{name: "three retries", retries: 3, results: []result{{retry, errBusy}, {retry, errBusy}, {retry, errBusy}, ok}, wantCalls: 4},
		{name: "not retryable", retries: 2, results: []result{{nil, errBad}, ok}, wantCalls: 1, wantErr: errBad},
		{name: "exhausted", retries: 2, results: []result{{retry, errBusy}, {retry, errBusy}, {retry, errBad}, ok}, wantCalls: 3, wantErr: errBad},
		{name: "no retries", retries: 0, results: []result{{retry, errBusy}, ok}, wantCalls: 1, wantErr: errBusy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			got, err := Retry(context.Background(), tt.retries, time.Millisecond, func() (int, *Hint, error) {
				r := tt.results[calls]
				calls++
				if r.err != nil {
					return -1, r.hint, r.err
				}
				return 42, nil, nil
			})
			if calls != tt.wantCalls {
				t.Errorf("attempt called %d times, want %d", calls, tt.wantCalls)
			}
			if tt.wantErr != nil {
				if err != tt.wantErr || got != 0 {
					t.Errorf("Retry() = %d, %v; want 0, %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != 42 {
				t.Errorf("Retry() = %d, %v; want 42, nil", got, err)
			}
		})
	}
}

func TestRetryContext(t *testing.T) {
	errBusy := errors.New("busy")
	slow := &Hint{After: 10 * time.Second, HasAfter: true}

	t.Run("deadline shorter than Retry-After", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		calls := 0
		_, err := Retry(ctx, 2, time.Millisecond, func() (int, *Hint, error) { calls++; return 0, slow, errBusy })
		if err != errBusy || calls != 1 {
			t.Errorf("Retry() error = %v after %d calls, want %v after 1", err, calls, errBusy)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("took %s, want no wait", d)
		}
	})

	t.Run("cancelled during the wait", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := Retry(ctx, 2, time.Millisecond, func() (int, *Hint, error) { return 0, slow, errBusy })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Retry() error = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("took %s, want prompt return", d)
		}
	})

	t.Run("cancelled during the attempt", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		_, err := Retry(ctx, 2, time.Millisecond, func() (int, *Hint, error) {
			calls++
			cancel()
			return 0, nil, errBusy // even a final failure gives way to ctx.Err()
		})
		if !errors.Is(err, context.Canceled) || calls != 1 {
			t.Errorf("Retry() error = %v after %d calls, want context.Canceled after 1", err, calls)
		}
	})
}
