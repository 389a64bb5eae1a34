package schema

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a refusal the REST API reports as Confluent's error body,
// {"error_code": Code, "message": Message}, with HTTP status Status. The
// codes are the catalogue below and never change meaning: clients
// (franz-go sr, Confluent's serializers) branch on them.
type Error struct {
	Status  int    // HTTP status
	Code    int    // Confluent error_code
	Message string // for people: what is wrong and what to do
}

func (e *Error) Error() string { return fmt.Sprintf("schema registry: %d %s", e.Code, e.Message) }

// Is matches another *Error with the same Code, so errors.Is(err,
// ErrSubjectNotFound) works on any message.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// The catalogue. The 4xxxx/5xxxx codes are Confluent's
// (io.confluent.kafka.schemaregistry.rest.exceptions.Errors); 400 and 413
// are ours for requests that are not JSON or too large.
var (
	ErrBadRequest         = &Error{http.StatusBadRequest, 400, "bad request"}
	ErrRequestTooLarge    = &Error{http.StatusRequestEntityTooLarge, 413, "request body too large"}
	ErrSubjectNotFound    = &Error{http.StatusNotFound, 40401, "subject not found"}
	ErrVersionNotFound    = &Error{http.StatusNotFound, 40402, "version not found"}
	ErrSchemaNotFound     = &Error{http.StatusNotFound, 40403, "schema not found"}
	ErrSubjectSoftDeleted = &Error{http.StatusNotFound, 40404, "subject was soft deleted"}
	ErrSubjectNotDeleted  = &Error{http.StatusNotFound, 40405, "subject was not soft deleted first"}
	ErrVersionSoftDeleted = &Error{http.StatusNotFound, 40406, "version was soft deleted"}
	ErrVersionNotDeleted  = &Error{http.StatusNotFound, 40407, "version was not soft deleted first"}
	ErrSubjectNoConfig    = &Error{http.StatusNotFound, 40408, "subject has no subject-level compatibility"}
	ErrSubjectNoMode      = &Error{http.StatusNotFound, 40409, "subject has no subject-level mode"}
	ErrIncompatible       = &Error{http.StatusConflict, 409, "schema is incompatible with an earlier schema"}
	ErrInvalidSchema      = &Error{http.StatusUnprocessableEntity, 42201, "invalid schema"}
	ErrInvalidVersion     = &Error{http.StatusUnprocessableEntity, 42202, "invalid version"}
	ErrInvalidLevel       = &Error{http.StatusUnprocessableEntity, 42203, "invalid compatibility level"}
	ErrInvalidMode        = &Error{http.StatusUnprocessableEntity, 42204, "invalid mode"}
	ErrNotPermitted       = &Error{http.StatusUnprocessableEntity, 42205, "operation not permitted"}
	ErrReferenceExists    = &Error{http.StatusUnprocessableEntity, 42206, "schema is referenced"}
	ErrIDMismatch         = &Error{http.StatusUnprocessableEntity, 42207, "schema ID does not match"}
	ErrInvalidSubject     = &Error{http.StatusUnprocessableEntity, 42208, "invalid subject"}
	ErrSchemaTooLarge     = &Error{http.StatusUnprocessableEntity, 42209, "schema too large"}
	ErrStore              = &Error{http.StatusInternalServerError, 50001, "error in the backend data store"}
	ErrTimeout            = &Error{http.StatusInternalServerError, 50002, "operation timed out"}
)

// errorf returns a copy of kind with a specific message.
func errorf(kind *Error, format string, args ...any) *Error {
	return &Error{Status: kind.Status, Code: kind.Code, Message: fmt.Sprintf(format, args...)}
}
