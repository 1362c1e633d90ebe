// Package tlstest makes the certificates kafkaguard's TLS tests need, as
// net/http/httptest makes servers: a fresh CA per test, a server certificate
// for 127.0.0.1, ::1 and localhost, a client certificate, an expired
// certificate and one from a CA nobody trusts, each written as PEM files
// into t.TempDir() so they vanish with the test. It starts no goroutines and
// keeps no state beyond the values it returns.
//
// Keys are ECDSA P-256 in PKCS#8 ("BEGIN PRIVATE KEY"), which every client
// the end-to-end tests drive reads without conversion:
//
//   - Go (crypto/tls): Certs.ServerConfig / ClientConfig, or the files.
//   - kcat and confluent-kafka (librdkafka): ssl.ca.location=CAFile,
//     ssl.certificate.location=ClientCertFile, ssl.key.location=ClientKeyFile.
//   - The Java client (Java 17, Kafka 2.7+ reads PEM itself, no JKS or
//     PKCS#12 needed): ssl.truststore.type=PEM,
//     ssl.truststore.location=CAFile, and for mTLS ssl.keystore.type=PEM,
//     ssl.keystore.location=ClientPEMFile (key and certificate in one file,
//     the key unencrypted, so no ssl.key.password).
//   - A Kafka broker with an SSL listener: the same with ServerPEMFile.
//
// Usage:
//
//	certs := tlstest.New(t)
//	ln, _ := tls.Listen("tcp", "127.0.0.1:0", certs.ServerConfig())
//	conn, _ := tls.Dial("tcp", ln.Addr().String(), certs.ClientConfig())
//	// or, to rotate a certificate: certs.CA.Issue(t, tlstest.Server("localhost")).WriteFiles(t, dir, "tls")
package tlstest
