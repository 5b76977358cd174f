package crdt

import (
	"errors"
	"reflect"
	"testing"
)

func TestParsePointer(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr error
	}{
		{"", nil, nil},
		{"/", []string{""}, nil},
		{"/a", []string{"a"}, nil},
		{"/a/b/0", []string{"a", "b", "0"}, nil},
		{"/a~1b", []string{"a/b"}, nil},
		{"/m~0n", []string{"m~n"}, nil},
		{"/~01", []string{"~1"}, nil},
		{"/~10", []string{"/0"}, nil},
		{"//", []string{"", ""}, nil},
		{"/ ", []string{" "}, nil},
		{"/-", []string{"-"}, nil},
		{"/é/✓", []string{"é", "✓"}, nil},
		{"a", nil, ErrInvalidPointer},
		{"#/a", nil, ErrInvalidPointer},
		{"/a~", nil, ErrInvalidPointer},
		{"/a~2", nil, ErrInvalidPointer},
		{"/~x", nil, ErrInvalidPointer},
	}
	for _, tt := range tests {
		got, err := ParsePointer(tt.in)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ParsePointer(%q) err = %v, want %v", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParsePointer(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			continue
		}
		if back := FormatPointer(got); back != tt.in {
			t.Errorf("FormatPointer(%q) = %q, want %q", got, back, tt.in)
		}
	}
}

func TestFormatPointer(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{}, ""},
		{[]string{""}, "/"},
		{[]string{"a/b", "c~d", "0"}, "/a~1b/c~0d/0"},
		{[]string{"~/"}, "/~0~1"},
	}
	for _, tt := range tests {
		if got := FormatPointer(tt.in); got != tt.want {
			t.Errorf("FormatPointer(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseIndex(t *testing.T) {
	tests := []struct {
		tok     string
		n, mode int
		want    int
		wantErr error
	}{
		{"0", 3, idxExisting, 0, nil},
		{"2", 3, idxExisting, 2, nil},
		{"3", 3, idxExisting, 0, ErrPathNotFound},
		{"3", 3, idxInsert, 3, nil},
		{"4", 3, idxInsert, 0, ErrPathNotFound},
		{"3", 3, idxAppend, 0, ErrPathNotFound},
		{"-", 3, idxAppend, 3, nil},
		{"-", 3, idxInsert, 3, nil},
		{"-", 3, idxExisting, 0, ErrPathNotFound},
		{"01", 3, idxExisting, 0, ErrInvalidPointer},
		{"-1", 3, idxExisting, 0, ErrInvalidPointer},
		{"+1", 3, idxExisting, 0, ErrInvalidPointer},
		{"1.0", 3, idxExisting, 0, ErrInvalidPointer},
		{"", 3, idxExisting, 0, ErrInvalidPointer},
		{"a", 3, idxExisting, 0, ErrInvalidPointer},
		{"99999999999999999999999", 3, idxInsert, 0, ErrPathNotFound},
	}
	for _, tt := range tests {
		got, err := parseIndex("/l/"+tt.tok, tt.tok, tt.n, tt.mode)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("parseIndex(%q, %d, %d) err = %v, want %v", tt.tok, tt.n, tt.mode, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseIndex(%q, %d, %d) = %d, %v; want %d", tt.tok, tt.n, tt.mode, got, err, tt.want)
		}
	}
}
