package creds

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
)

// TLSFromEnv builds a client TLS configuration from <prefix>_TLS (true/false),
// <prefix>_CA_FILE (PEM bundle of trusted CAs; setting it turns TLS on) and
// <prefix>_TLS_SERVER_NAME (the name to verify, when it differs from the address).
// It returns nil when TLS is off. Certificates are always verified.
func TLSFromEnv(getenv func(string) string, prefix string) (*tls.Config, error) {
	on := false
	if v := getenv(prefix + "_TLS"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%s_TLS: %q is not a boolean", prefix, v)
		}
		on = b
	}
	ca := getenv(prefix + "_CA_FILE")
	if !on && ca == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: getenv(prefix + "_TLS_SERVER_NAME")}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("%s_CA_FILE: %w", prefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s_CA_FILE: %s holds no PEM certificate", prefix, ca)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
