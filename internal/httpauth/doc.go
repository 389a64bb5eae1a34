// Package httpauth is the bearer-token check of the edge and core HTTP
// APIs, written once so both binaries accept and refuse the same requests
// with the same answer: a request passes when no token is configured, when
// its path is one of the open paths (health probes), or when it carries
// "Authorization: Bearer <token>" (scheme case-insensitive, surrounding
// blanks ignored). Tokens are compared as SHA-256 hashes in constant time,
// so neither the comparison's result nor its duration depends on how much
// of a guess is right. A refusal is 401 with WWW-Authenticate and a JSON
// body {"error": "..."} that says what to send. It keeps no state beyond
// the token's hash.
package httpauth
