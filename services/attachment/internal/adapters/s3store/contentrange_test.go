package s3store

import "testing"

func TestParseContentRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name               string
		in                 string
		first, last, total int64
		wantErr            bool
	}{
		{name: "whole", in: "bytes 0-99/100", first: 0, last: 99, total: 100},
		{name: "middle", in: "bytes 10-19/100", first: 10, last: 19, total: 100},
		{name: "no unit", in: "0-99/100", wantErr: true},
		{name: "no size", in: "bytes 0-99", wantErr: true},
		{name: "unknown size", in: "bytes 0-99/*", wantErr: true},
		{name: "last before first", in: "bytes 9-5/100", wantErr: true},
		{name: "past the end", in: "bytes 0-100/100", wantErr: true},
		{name: "negative", in: "bytes -1-5/100", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		first, last, total, err := parseContentRange(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && (first != tt.first || last != tt.last || total != tt.total)) {
			t.Errorf("%s: parseContentRange(%q) = %d, %d, %d, %v; want %d, %d, %d, error %v",
				tt.name, tt.in, first, last, total, err, tt.first, tt.last, tt.total, tt.wantErr)
		}
	}
}
