package devserver

import "testing"

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr    string
		want    bool
		wantErr bool
	}{
		{addr: "127.0.0.1:8200", want: true},
		{addr: "127.0.0.1:0", want: true},
		{addr: "localhost:8400", want: true},
		{addr: "[::1]:8200", want: true},
		{addr: "0.0.0.0:8200", want: false},
		{addr: "10.0.0.5:8200", want: false},
		{addr: "example.com:8200", want: false},
		{addr: "nonsense", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			got, err := IsLoopback(tt.addr)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("IsLoopback(%q) = %v, %v; want %v, error %v", tt.addr, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
