/* The status table expanded into names and messages, and the error-detail channel. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

unsigned padec_version_number(void) { return PADEC_VERSION_NUMBER; }

const char *padec_status_name(padec_status status) {
  switch (status) {
#define PADEC_STATUS_NAME_(name, value, message) \
  case name:                                     \
    return #name;
    PADEC_STATUS_TABLE(PADEC_STATUS_NAME_)
#undef PADEC_STATUS_NAME_
  }
  return "PADEC_STATUS_UNKNOWN";
}

const char *padec_status_str(padec_status status) {
  switch (status) {
#define PADEC_STATUS_STR_(name, value, message) \
  case name:                                    \
    return message;
    PADEC_STATUS_TABLE(PADEC_STATUS_STR_)
#undef PADEC_STATUS_STR_
  }
  return "unknown status";
}

static padec_log_fn g_log_fn;
static void *g_log_user;
static _Thread_local char t_last_message[512];
static _Thread_local bool t_log_muted;

void padec_set_log_callback(padec_log_fn fn, void *user) {
  g_log_fn = fn;
  g_log_user = user;
}

const char *padec_last_message(void) { return t_last_message; }

void padec__clear_message(void) { t_last_message[0] = '\0'; }

void padec__mute_log(bool muted) { t_log_muted = muted; }

padec_status padec__fail(padec_status status, const char *format, ...) {
  char detail[400];
  va_list args;
  va_start(args, format);
  vsnprintf(detail, sizeof detail, format, args);
  va_end(args);
  snprintf(t_last_message, sizeof t_last_message, "%s: %s", padec_status_name(status), detail);
  /* Read once: the test and the call see the same function (setting the callback while other
   * threads fail is outside the header's contract, but must not turn into a call through NULL). */
  const padec_log_fn log_fn = g_log_fn;
  void *const log_user = g_log_user;
  if (log_fn && !t_log_muted) log_fn(log_user, status, t_last_message);
  return status;
}
