/*
 * The workload format of bench/workloads.txt: one line of key=value pairs per workload.
 *
 * Parsing is strict on purpose: a misspelt key or a malformed length list in a benchmark file
 * would otherwise silently benchmark something else. Every error names the key and the value.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* Same cap as padec_plan_layout_init's batch limit, so a parsed workload can always be planned. */
#define WORKLOAD_MAX_BATCH (1 << 24)

static int fail(char *err, size_t err_size, const char *format, ...) {
  if (err && err_size > 0) {
    va_list args;
    va_start(args, format);
    vsnprintf(err, err_size, format, args);
    va_end(args);
  }
  return -1;
}

/* A decimal integer in [lo, hi] spanning exactly [begin, end). */
static bool parse_int_range(const char *begin, const char *end, long long lo, long long hi,
                            long long *value) {
  if (begin == end) return false;
  long long v = 0;
  for (const char *s = begin; s < end; ++s) {
    if (*s < '0' || *s > '9') return false;
    v = v * 10 + (*s - '0');
    if (v > hi) return false;
  }
  if (v < lo) return false;
  *value = v;
  return true;
}

static bool parse_int(const char *text, long long lo, long long hi, long long *value) {
  return parse_int_range(text, text + strlen(text), lo, hi, value);
}

/* lens: items separated by commas, each N or NxK (N repeated K times). Two passes: count, then
 * fill, so that the array is allocated once at its exact size. */
static int parse_lens(const char *text, int32_t **lens_out, int32_t *batch_out, char *err,
                      size_t err_size) {
  int64_t batch = 0;
  for (int pass = 0; pass < 2; ++pass) {
    int32_t *lens = NULL;
    if (pass == 1) {
      lens = (int32_t *)malloc(sizeof(int32_t) * (size_t)(batch > 0 ? batch : 1));
      if (!lens)
        return fail(err, err_size, "lens: out of memory for %lld sequences", (long long)batch);
    }
    int64_t count = 0;
    const char *item = text;
    for (;;) {
      const char *comma = strchr(item, ',');
      const char *item_end = comma ? comma : item + strlen(item);
      const char *x = memchr(item, 'x', (size_t)(item_end - item));
      long long len = 0, repeat = 1;
      const char *len_end = x ? x : item_end;
      bool ok = parse_int_range(item, len_end, 0, INT32_MAX, &len);
      if (ok && x) ok = parse_int_range(x + 1, item_end, 1, WORKLOAD_MAX_BATCH, &repeat);
      if (!ok) {
        free(lens);
        return fail(err, err_size,
                    "lens=%.48s%s: bad item '%.*s' (want a length 0..%d or LENxCOUNT with "
                    "COUNT 1..%d, separated by commas)",
                    text, strlen(text) > 48 ? "..." : "",
                    item_end - item > 32 ? 32 : (int)(item_end - item), item, INT32_MAX,
                    WORKLOAD_MAX_BATCH);
      }
      if (count + repeat > WORKLOAD_MAX_BATCH) {
        free(lens);
        return fail(err, err_size, "lens=%.48s%s: more than %d sequences", text,
                    strlen(text) > 48 ? "..." : "", WORKLOAD_MAX_BATCH);
      }
      if (lens)
        for (long long r = 0; r < repeat; ++r) lens[count + r] = (int32_t)len;
      count += repeat;
      if (!comma) break;
      item = comma + 1;
    }
    batch = count;
    if (pass == 1) {
      *lens_out = lens;
      *batch_out = (int32_t)batch;
    }
  }
  return 0;
}

static bool parse_dtype(const char *text, bool allow_fp8, bool allow_fp32, padec_dtype *dtype) {
  if (strcmp(text, "bf16") == 0)
    *dtype = PADEC_DTYPE_BF16;
  else if (strcmp(text, "fp16") == 0)
    *dtype = PADEC_DTYPE_FP16;
  else if (allow_fp32 && strcmp(text, "fp32") == 0)
    *dtype = PADEC_DTYPE_FP32;
  else if (allow_fp8 && strcmp(text, "fp8") == 0)
    *dtype = PADEC_DTYPE_E4M3;
  else
    return false;
  return true;
}

enum {
  KEY_NAME,
  KEY_Q_HEADS,
  KEY_KV_HEADS,
  KEY_HEAD_DIM,
  KEY_PAGE,
  KEY_KV,
  KEY_WINDOW,
  KEY_LENS,
  KEY_Q_LEN,
  KEY_Q,
  KEY_O,
  KEY_LAYOUT,
  KEY_SCALES,
  KEY_COUNT
};
static const char *const key_names[KEY_COUNT] = {"name", "q_heads", "kv_heads", "head_dim", "page",
                                                 "kv",   "window",  "lens",     "q_len",    "q",
                                                 "o",    "layout",  "scales"};
/* window is optional (0, full attention) so that an ad-hoc line can leave it out. */
static const bool key_required[KEY_COUNT] = {true, true, true, true, true, true, false, true};

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Parses the key=value pairs of text (modified in place) into *w; w->kv_lens may be set on
 * failure too, and the caller frees it. */
static int parse_pairs(char *text, padec_workload *w, char *err, size_t err_size) {
  bool seen[KEY_COUNT] = {false};
  int scales = -1; /* -1: default for the kv dtype */
  char *s = text;
  while (*s) {
    char *token = s;
    while (*s && !is_space(*s)) ++s;
    if (*s) *s++ = '\0';
    while (is_space(*s)) ++s;

    char *eq = strchr(token, '=');
    if (!eq || eq == token) return fail(err, err_size, "'%.64s': expected key=value", token);
    *eq = '\0';
    const char *key = token, *value = eq + 1;
    int k = 0;
    while (k < KEY_COUNT && strcmp(key, key_names[k]) != 0) ++k;
    if (k == KEY_COUNT)
      return fail(err, err_size,
                  "unknown key '%.64s' (keys: name q_heads kv_heads head_dim page kv window lens "
                  "q_len q o layout scales)",
                  key);
    if (seen[k]) return fail(err, err_size, "key '%s' given twice", key);
    seen[k] = true;
    if (*value == '\0') return fail(err, err_size, "%s=: empty value", key);

    long long v = 0;
    bool ok = true;
    const char *want = "";
    switch (k) {
      case KEY_NAME:
        ok = strlen(value) < sizeof w->name;
        want = "at most 95 characters";
        if (ok) strcpy(w->name, value);
        break;
      case KEY_Q_HEADS:
        ok = parse_int(value, 1, 4096, &v);
        want = "an integer 1..4096";
        w->params.num_q_heads = (int32_t)v;
        break;
      case KEY_KV_HEADS:
        ok = parse_int(value, 1, 4096, &v);
        want = "an integer 1..4096";
        w->params.num_kv_heads = (int32_t)v;
        break;
      case KEY_HEAD_DIM:
        ok = parse_int(value, 1, 4096, &v) && (v == 64 || v == 128 || v == 256);
        want = "64, 128 or 256";
        w->params.head_dim = (int32_t)v;
        break;
      case KEY_PAGE:
        ok = parse_int(value, 1, 1024, &v) && (v & (v - 1)) == 0;
        want = "a power of two 1..1024";
        w->params.page_size = (int32_t)v;
        break;
      case KEY_KV:
        ok = parse_dtype(value, true, false, &w->params.kv_dtype);
        want = "bf16, fp16 or fp8";
        break;
      case KEY_WINDOW:
        ok = parse_int(value, 0, INT32_MAX, &v);
        want = "an integer >= 0 (0 = full attention)";
        w->params.window_left = (int32_t)v;
        break;
      case KEY_LENS:
        if (parse_lens(value, &w->kv_lens, &w->batch, err, err_size) != 0) return -1;
        break;
      case KEY_Q_LEN:
        ok = parse_int(value, 1, 4, &v);
        want = "1..4";
        w->params.q_len = (int32_t)v;
        break;
      case KEY_Q:
        ok = parse_dtype(value, false, false, &w->params.q_dtype);
        want = "bf16 or fp16";
        break;
      case KEY_O:
        ok = parse_dtype(value, false, true, &w->params.o_dtype);
        want = "bf16, fp16 or fp32";
        break;
      case KEY_LAYOUT:
        if (strcmp(value, "nhd") == 0)
          w->params.kv_layout = PADEC_LAYOUT_NHD;
        else if (strcmp(value, "hnd") == 0)
          w->params.kv_layout = PADEC_LAYOUT_HND;
        else
          ok = false;
        want = "nhd or hnd";
        break;
      case KEY_SCALES:
        if (strcmp(value, "none") == 0)
          scales = PADEC_FP8_SCALE_NONE;
        else if (strcmp(value, "tensor") == 0)
          scales = PADEC_FP8_SCALE_PER_TENSOR;
        else if (strcmp(value, "device") == 0)
          scales = PADEC_FP8_SCALE_PER_TENSOR_DEVICE;
        else if (strcmp(value, "token") == 0)
          scales = PADEC_FP8_SCALE_PER_TOKEN;
        else
          ok = false;
        want = "none, tensor, device or token";
        break;
      default: break;
    }
    if (!ok) return fail(err, err_size, "%s=%.64s: need %s", key, value, want);
  }

  for (int k = 0; k < KEY_COUNT; ++k)
    if (key_required[k] && !seen[k]) {
      if (seen[KEY_NAME])
        return fail(err, err_size, "missing key '%s' (workload '%s')", key_names[k], w->name);
      return fail(err, err_size, "missing key '%s'", key_names[k]);
    }
  if (w->params.num_q_heads % w->params.num_kv_heads != 0)
    return fail(err, err_size, "q_heads=%d kv_heads=%d: q_heads must be a multiple of kv_heads",
                w->params.num_q_heads, w->params.num_kv_heads);
  if (w->params.kv_dtype == PADEC_DTYPE_E4M3) {
    /* Placeholder scales: the case generator draws the real ones when it quantises. */
    w->params.fp8_scale_mode =
        scales >= 0 ? (padec_fp8_scale_mode)scales : PADEC_FP8_SCALE_PER_TENSOR;
    w->params.k_scale = 1.0f;
    w->params.v_scale = 1.0f;
  } else if (scales > PADEC_FP8_SCALE_NONE) {
    return fail(err, err_size, "scales=%s: scales are for kv=fp8 only",
                scales == PADEC_FP8_SCALE_PER_TENSOR          ? "tensor"
                : scales == PADEC_FP8_SCALE_PER_TENSOR_DEVICE ? "device"
                                                              : "token");
  }
  if (padec_params_validate(&w->params) != PADEC_STATUS_OK)
    return fail(err, err_size, "invalid parameters: %s", padec_last_message());
  /* A parsed workload can be planned under the even and cost policies with any worker count:
   * their work items (at most num_kv_heads x batch + workers) are indexed in int32, and the
   * widest plan, 65536 workers, has the most. */
  const padec_plan_options widest = {65536, 0, PADEC_POLICY_EVEN, NULL};
  padec_plan_layout layout;
  if (padec_plan_layout_init(&w->params, w->batch, &widest, &layout) != PADEC_STATUS_OK)
    return fail(err, err_size, "lens: %d sequences x kv_heads=%d are more than a plan holds (%s)",
                w->batch, w->params.num_kv_heads, padec_last_message());
  return 0;
}

int padec_workload_parse(const char *line, padec_workload *workload, char *err, size_t err_size) {
  if (!line || !workload) return fail(err, err_size, "no line or no workload given");
  const char *s = line;
  while (is_space(*s)) ++s;
  if (*s == '\0') return fail(err, err_size, "empty line: no workload");
  if (*s == '#') return fail(err, err_size, "comment line: no workload");

  size_t length = strlen(s);
  char *text = (char *)malloc(length + 1);
  if (!text) return fail(err, err_size, "out of memory for a line of %zu characters", length);
  memcpy(text, s, length + 1);
  padec_workload w;
  memset(&w, 0, sizeof w);
  w.params.q_len = 1;
  int rc = parse_pairs(text, &w, err, err_size);
  free(text);
  if (rc != 0) {
    free(w.kv_lens);
    return -1;
  }
  *workload = w;
  return 0;
}

int padec_workload_read_file(const char *path, padec_workload **workloads, int *count, char *err,
                             size_t err_size) {
  if (!path || !workloads || !count) return fail(err, err_size, "no path or no output given");
  FILE *file = fopen(path, "r");
  if (!file) return fail(err, err_size, "%s: %s", path, strerror(errno));

  padec_workload *list = NULL;
  int n = 0, capacity = 0, line_number = 0, status = 0;
  size_t line_capacity = 4096;
  char *line = (char *)malloc(line_capacity);
  char message[1024];
  if (!line) status = fail(err, err_size, "%s: out of memory", path);

  while (status == 0) {
    /* Lines can be long (a 128-sequence lens list is ~700 characters; generated files more), so
     * grow the buffer until the whole line is in. */
    size_t used = 0;
    bool got = false, has_nul = false;
    int c;
    while ((c = getc(file)) != EOF) {
      got = true;
      if (used + 2 > line_capacity) {
        char *bigger = (char *)realloc(line, line_capacity * 2);
        if (!bigger) {
          status = fail(err, err_size, "%s:%d: out of memory", path, line_number + 1);
          break;
        }
        line = bigger;
        line_capacity *= 2;
      }
      /* A NUL would end the line for the parser and hide what follows it. */
      has_nul |= c == '\0';
      line[used++] = (char)c;
      if (c == '\n') break;
    }
    if (status != 0 || !got) break;
    line[used] = '\0';
    ++line_number;
    if (has_nul) {
      status = fail(err, err_size, "%s:%d: a NUL byte in the line (a workloads file is text)", path,
                    line_number);
      break;
    }
    const char *s = line;
    while (is_space(*s)) ++s;
    if (*s == '\0' || *s == '#') continue;
    if (n == capacity) {
      int grown = capacity ? capacity * 2 : 16;
      padec_workload *bigger =
          (padec_workload *)realloc(list, sizeof(padec_workload) * (size_t)grown);
      if (!bigger) {
        status = fail(err, err_size, "%s:%d: out of memory", path, line_number);
        break;
      }
      list = bigger;
      capacity = grown;
    }
    if (padec_workload_parse(s, &list[n], message, sizeof message) != 0) {
      status = fail(err, err_size, "%s:%d: %s", path, line_number, message);
      break;
    }
    ++n;
  }
  if (status == 0 && ferror(file)) status = fail(err, err_size, "%s: read error: %s", path, strerror(errno));
  fclose(file);
  free(line);
  if (status != 0) {
    padec_workloads_free(list, n);
    return status;
  }
  *workloads = list;
  *count = n;
  return 0;
}

void padec_workload_free(padec_workload *workload) {
  if (!workload) return;
  free(workload->kv_lens);
  workload->kv_lens = NULL;
  workload->batch = 0;
}

void padec_workloads_free(padec_workload *workloads, int count) {
  if (!workloads) return;
  for (int i = 0; i < count; ++i) padec_workload_free(&workloads[i]);
  free(workloads);
}

uint64_t padec_workload_bytes(const padec_workload *workload) {
  if (!workload) return 0;
  const padec_params *p = &workload->params;
  int64_t q_len = p->q_len > 0 ? p->q_len : 1;
  uint64_t element_bytes = p->kv_dtype == PADEC_DTYPE_E4M3 ? 1 : 2;
  uint64_t tokens = 0;
  for (int32_t b = 0; b < workload->batch; ++b) {
    int64_t len = workload->kv_lens[b];
    /* Queries see positions max(0, L - q_len - W) .. L - 1 together: W + q_len tokens. */
    int64_t attended = len;
    if (p->window_left > 0 && (int64_t)p->window_left + q_len < len)
      attended = p->window_left + q_len;
    tokens += (uint64_t)attended;
  }
  return tokens * (uint64_t)p->num_kv_heads * (uint64_t)p->head_dim * 2u * element_bytes;
}
