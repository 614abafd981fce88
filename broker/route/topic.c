/* SPDX-License-Identifier: MIT
 *
 * topic: the syntax of topic names and filters (section 4.7) and shared
 * subscription names (4.8.2). Pure functions over byte ranges. */
#include <string.h>

#include "topic.h"

bool
topic_name_is_valid(const char *t, size_t len)
{
    if (len == 0 || len > 65535) return false; /* [MQTT-4.7.3-1] */
    for (size_t i = 0; i < len; i++)
        if (t[i] == '+' || t[i] == '#' || t[i] == '\0') return false; /* [MQTT-4.7.0-1] */
    return true;
}

bool
topic_filter_is_valid(const char *f, size_t len)
{
    if (len == 0 || len > 65535) return false;
    for (size_t i = 0; i < len; i++) {
        bool starts = i == 0 || f[i - 1] == '/';
        bool ends = i + 1 == len || f[i + 1] == '/';
        if (f[i] == '\0') return false;
        if (f[i] == '+' && !(starts && ends)) return false;         /* [MQTT-4.7.1-2] */
        if (f[i] == '#' && !(starts && i + 1 == len)) return false; /* [MQTT-4.7.1-1] */
    }
    return true;
}

bool
topic_is_sys(const char *t, size_t len)
{
    return len >= 4 && memcmp(t, "$SYS", 4) == 0 && (len == 4 || t[4] == '/');
}

bool
topic_is_too_deep(const char *t, size_t len, uint32_t max)
{
    if (!max || len < max) return false; /* fewer than max - 1 '/' */
    uint32_t levels = 1;
    for (const char *p = t, *end = t + len; (p = memchr(p, '/', (size_t)(end - p))); p++)
        if (++levels > max) return true;
    return false;
}

int
topic_parse_shared(const char *f, size_t len, const char **group, size_t *group_len,
                   const char **filter, size_t *filter_len)
{
    static const char prefix[] = "$share/";
    const size_t plen = sizeof(prefix) - 1;
    if (len < plen || memcmp(f, prefix, plen) != 0) return 0;
    const char *g = f + plen;
    const char *slash = memchr(g, '/', len - plen);
    if (!slash || slash == g) return -1; /* no group, or no filter [MQTT-4.8.2-1] */
    for (const char *p = g; p < slash; p++)
        if (*p == '+' || *p == '#') return -1; /* [MQTT-4.8.2-2] */
    size_t flen = len - (size_t)(slash + 1 - f);
    if (!topic_filter_is_valid(slash + 1, flen)) return -1;
    *group = g;
    *group_len = (size_t)(slash - g);
    *filter = slash + 1;
    *filter_len = flen;
    return 1;
}

bool
topic_matches(const char *filter, size_t flen, const char *name, size_t nlen)
{
    /* '$' topics are not matched by a leading wildcard [MQTT-4.7.2-1] */
    if (nlen && name[0] == '$' && flen && (filter[0] == '+' || filter[0] == '#')) return false;
    size_t fi = 0, ni = 0;
    for (;;) {
        size_t fe = fi, ne = ni;
        while (fe < flen && filter[fe] != '/') fe++;
        while (ne < nlen && name[ne] != '/') ne++;
        if (fe - fi == 1 && filter[fi] == '#') return true; /* rest, parent level included */
        bool plus = fe - fi == 1 && filter[fi] == '+';
        if (!plus && (fe - fi != ne - ni || memcmp(filter + fi, name + ni, fe - fi) != 0))
            return false;
        bool flast = fe >= flen, nlast = ne >= nlen;
        if (flast && nlast) return true;
        if (nlast) /* "a/#" also matches "a" */
            return flen - fe == 2 && filter[fe + 1] == '#';
        if (flast) return false;
        fi = fe + 1;
        ni = ne + 1;
    }
}
