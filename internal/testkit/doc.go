// Package testkit is test support for hookd: it checks for a Docker engine,
// runs an in-process OCI registry on loopback, pushes images built from the
// testapp program, and removes what tests left on the engine. Only _test.go
// files may import it.
package testkit
