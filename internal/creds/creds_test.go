package creds

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFromEnv(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "pw")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		env      map[string]string
		wantUser string
		wantPW   string
		wantErr  string
	}{
		{"defaults", nil, "guest", "def", ""},
		{"env", map[string]string{"X_USER": "u", "X_PASSWORD": "p"}, "u", "p", ""},
		{"file", map[string]string{"X_PASSWORD_FILE": secret}, "guest", "s3cret", ""},
		{"both", map[string]string{"X_PASSWORD": "p", "X_PASSWORD_FILE": secret}, "", "", "both set"},
		{"missing file", map[string]string{"X_PASSWORD_FILE": filepath.Join(dir, "nope")}, "", "", "X_PASSWORD_FILE"},
		{"empty file", map[string]string{"X_PASSWORD_FILE": empty}, "", "", "is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FromEnv(func(k string) string { return tc.env[k] }, "X", "guest", "def")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || c.User != tc.wantUser || c.Password != tc.wantPW {
				t.Fatalf("got %+v, %v", c, err)
			}
			if strings.Contains(c.String(), c.Password) {
				t.Errorf("String shows the password")
			}
		})
	}
}
