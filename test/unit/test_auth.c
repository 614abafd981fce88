/* SPDX-License-Identifier: MIT
 *
 * auth: password_file (mosquitto_passwd's $7$ and $6$ entries: known answers computed
 * with Python's hashlib, entries made by Debian's mosquitto_passwd, ours checked by
 * hashlib), `lunamq-ctl passwd`, and acl_file (parser errors as FILE:LINE, mosquitto's
 * precedence, patterns, $ topics, SUBSCRIBE classes, the filter algebra), with the
 * compiled trees compared against a literal transcription of mosquitto's loop. */
#include <check.h>
#include <libgen.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth.h"
#include "auth_verify.h"
#include "lq.h"
#include "suites.h"
#include "topic.h"

/* ---- files ---- */

static char dir[64];
static char err[1024];
static int nfiles;

static void
setup(void)
{
    strcpy(dir, "/tmp/lunamq-auth-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    nfiles = 0;
}

static void
teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* A new file in dir holding len bytes of text; its path (static, one of several). */
static const char *
write_file_len(const char *text, size_t len)
{
    static char paths[8][96];
    char *p = paths[nfiles % 8];
    snprintf(p, sizeof(paths[0]), "%s/f%d", dir, nfiles++);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    fclose(f);
    return p;
}

static const char *
write_file(const char *text)
{
    return write_file_len(text, strlen(text));
}

static char *
repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

static int
run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- password_file ---- */

/* Known answers, computed independently:
 *   python3 -c "import hashlib,base64; ... hashlib.pbkdf2_hmac('sha512', pw, salt, n)"
 * and hashlib.sha512(pw + salt) for $6$. */
#define V7_SECRET                                                           \
    "$7$101$AAECAwQFBgcICQoL$"                                              \
    "Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBbCAbICS4xejTltonXWCtJNBvA+" \
    "By+TXUqU6qCblO00w=="
/* salt bytes 0..63, 1000 rounds, "pässwörd" in UTF-8 */
#define V7_SALT64                                                                                  \
    "$7$1000$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+" \
    "Pw==$u2kfHFunJisdrj5AoASSxyQMBdD5HWfqWMNhZ/x2w1spBDSBFIfJUbercEctC0Fe0XP9cJqgPO/"             \
    "7oe8IhnY2XA=="
/* $6$, salt "saltsaltsalt", "secret" */
#define V6_SECRET                                                                   \
    "$6$c2FsdHNhbHRzYWx0$3aiBbchfIZo+1WYrkPzJjQxZ79F/NmwLQ+wF073kTd+6ANhaic8G/jWF/" \
    "X4sqSFUKpLNdm1FZjBck6HQ8knM3A=="
/* 5 rounds of "a\0b" (3 bytes), salt bytes 100..111 */
#define V7_NUL                                                                                \
    "$7$5$ZGVmZ2hpamtsbW5v$sNjT7x+pAbAED6bne8R5JuPUnwGiJUVq1yr4YGYoKhh3eVd6hwymJF9TJ5R2CdaT+" \
    "PMrcVpbcqayEAwP9dTXPw=="
/* $6$ of the empty password, salt bytes 0..63 */
#define V6_EMPTY                                                                                  \
    "$6$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==" \
    "$7kMg668/208sgysTcgDAjiNeD6e70OsXQMcGO6ig0VHad+ADOY4XFKlV1HWwXj6VC2OVA7RS7Bhd5CKbxIc5SQ=="

static struct pwfile *
pw_load_text(const char *text)
{
    struct pwfile *f = pwfile_load(write_file(text), err, sizeof(err));
    ck_assert_msg(f != NULL, "%s", err);
    return f;
}

static bool
pw_ok(const struct pwfile *f, const char *user, const char *pw)
{
    const struct pw_entry *e = pwfile_find(f, user, strlen(user));
    ck_assert_msg(e != NULL, "no user %s", user);
    bool a = pw_entry_verify(e, pw, strlen(pw));
    ck_assert_int_eq(a, pwfile_verify(f, user, strlen(user), pw, strlen(pw)));
    return a;
}

START_TEST(test_pw_known_answers)
{
    struct pwfile *f = pw_load_text("alice:" V7_SECRET "\n"
                                    "bob:" V7_SALT64 "\n"
                                    "carol:" V6_SECRET "\n"
                                    "dave:" V7_NUL "\n"
                                    "eve:" V6_EMPTY "\n");
    ck_assert_uint_eq(pwfile_count(f), 5);
    ck_assert(pw_ok(f, "alice", "secret"));
    ck_assert(!pw_ok(f, "alice", "secreT"));
    ck_assert(!pw_ok(f, "alice", ""));
    /* HMAC pads a short key with zeros: PBKDF2 cannot tell "secret" from "secret\0";
     * SHA-512 ($6$) hashes every byte */
    ck_assert(!pw_entry_verify(pwfile_find(f, "carol", 5), "secret\0", 7));
    ck_assert(pw_ok(f, "bob", "p\xc3\xa4ssw\xc3\xb6rd"));
    ck_assert(!pw_ok(f, "bob", "passwoerd"));
    ck_assert(pw_ok(f, "carol", "secret"));
    ck_assert(!pw_ok(f, "carol", "secrets"));
    const struct pw_entry *d = pwfile_find(f, "dave", 4);
    ck_assert(pw_entry_verify(d, "a\0b", 3)); /* mosquitto would hash "a" */
    ck_assert(!pw_entry_verify(d, "a", 1));
    ck_assert(pw_ok(f, "eve", ""));
    ck_assert(!pw_ok(f, "eve", "x"));
    ck_assert_ptr_null(pwfile_find(f, "mallory", 7));
    ck_assert_ptr_null(pwfile_find(f, "alic", 4));
    pwfile_unref(f);
}
END_TEST

START_TEST(test_pw_unknown_user)
{
    struct pwfile *f = pw_load_text("alice:" V7_SECRET "\n");
    ck_assert(!pw_entry_verify(NULL, "secret", 6));
    ck_assert(!pwfile_verify(f, "nobody", 6, "secret", 6));
    ck_assert(!pwfile_verify(f, "alice", 5, "nope", 4));
    ck_assert(pwfile_verify(f, "alice", 5, "secret", 6));
    /* references: the entry stays valid while one is held */
    struct pwfile *g = pwfile_ref(f);
    pwfile_unref(f);
    ck_assert(pwfile_verify(g, "alice", 5, "secret", 6));
    pwfile_unref(g);
    pwfile_unref(NULL);
}
END_TEST

/* Comments, blank lines, CRLF, blanks around the name and the hash (mosquitto trims). */
START_TEST(test_pw_layout)
{
    struct pwfile *f = pw_load_text("# a comment\r\n"
                                    "\r\n"
                                    "   # indented comment\n"
                                    "  alice  :  " V7_SECRET "  \r\n"
                                    "bob smith:" V6_SECRET); /* no final newline */
    ck_assert_uint_eq(pwfile_count(f), 2);
    ck_assert(pw_ok(f, "alice", "secret"));
    ck_assert(pw_ok(f, "bob smith", "secret"));
    pwfile_unref(f);
    f = pw_load_text("");
    ck_assert_uint_eq(pwfile_count(f), 0);
    ck_assert(!pwfile_verify(f, "x", 1, "y", 1));
    pwfile_unref(f);
}
END_TEST

/* A user listed twice: the last line wins (as in mosquitto). */
START_TEST(test_pw_duplicate)
{
    struct pwfile *f = pw_load_text("alice:" V7_SECRET "\n"
                                    "alice:" V7_SALT64 "\n");
    ck_assert_uint_eq(pwfile_count(f), 1);
    ck_assert(pw_ok(f, "alice", "p\xc3\xa4ssw\xc3\xb6rd"));
    ck_assert(!pw_ok(f, "alice", "secret"));
    pwfile_unref(f);
}
END_TEST

static void
pw_expect_error_len(const char *text, size_t len, int line, const char *msg)
{
    const char *p = write_file_len(text, len);
    ck_assert_ptr_null(pwfile_load(p, err, sizeof(err)));
    char want[1200];
    if (line)
        snprintf(want, sizeof(want), "%s:%d: %s", p, line, msg);
    else
        snprintf(want, sizeof(want), "%s: %s", p, msg);
    ck_assert_str_eq(err, want);
}

static void
pw_expect_error(const char *text, int line, const char *msg)
{
    pw_expect_error_len(text, strlen(text), line, msg);
}

#define SALT12 "AAECAwQFBgcICQoL"
#define HASH64 \
    "Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBbCAbICS4xejTltonXWCtJNBvA+By+TXUqU6qCblO00w=="

START_TEST(test_pw_errors)
{
    static const char not_hash[] = "not a $7$ or $6$ hash (plain text passwords are not read: "
                                   "hash them with lunamq-ctl passwd or mosquitto_passwd -U)";
    pw_expect_error("alice\n", 1, "no ':' (expected user:$7$... or user:$6$...)");
    pw_expect_error("# c\n\n:" V7_SECRET "\n", 3, "an empty user name");
    pw_expect_error("  :" V7_SECRET "\n", 1, "an empty user name");
    pw_expect_error("alice:\n", 1, not_hash);
    pw_expect_error("alice:secret\n", 1, not_hash);
    pw_expect_error("alice:$5$abc$def\n", 1, not_hash);
    pw_expect_error("alice:$argon2id$v=19$m=47104,t=1,p=1$c2FsdA$aGFzaA\n", 1,
                    "an argon2id hash (mosquitto 2.1): only $6$ and $7$ are supported");
    pw_expect_error("alice:$7$0$" SALT12 "$" HASH64 "\n", 1, "an iteration count of 0");
    pw_expect_error("alice:$7$10000001$" SALT12 "$" HASH64 "\n", 1,
                    "an iteration count above 10000000");
    pw_expect_error("alice:$7$99999999999999999999999$" SALT12 "$" HASH64 "\n", 1,
                    "an iteration count above 10000000");
    pw_expect_error("alice:$7$12a$" SALT12 "$" HASH64 "\n", 1,
                    "the iteration count is not a number");
    pw_expect_error("alice:$7$$" SALT12 "$" HASH64 "\n", 1, "the iteration count is not a number");
    pw_expect_error("alice:$7$-5$" SALT12 "$" HASH64 "\n", 1,
                    "the iteration count is not a number");
    pw_expect_error("alice:$7$101\n", 1, "no '$' after the iteration count");
    pw_expect_error("alice:$7$101$AAEC!wQFBgcICQoL$" HASH64 "\n", 1, "the salt is not base64");
    pw_expect_error("alice:$7$101$AA=CAwQFBgcICQoL$" HASH64 "\n", 1, "the salt is not base64");
    pw_expect_error("alice:$7$101$$" HASH64 "\n", 1, "the salt is not base64");
    pw_expect_error("alice:$7$101$AAECAwQF$" HASH64 "\n", 1, "the salt is not 12 or 64 bytes");
    pw_expect_error("alice:$7$101$" SALT12 "\n", 1, "no '$' between the salt and the hash");
    pw_expect_error("alice:$7$101$" SALT12 "$" HASH64 "$x\n", 1, "a '$' after the hash");
    pw_expect_error("alice:$7$101$" SALT12 "$Xr99N9ym\n", 1, "the hash is not 64 bytes");
    pw_expect_error("alice:$7$101$" SALT12 "$\n", 1, "the hash is not base64");
    pw_expect_error("alice:$7$101$" SALT12 "$" HASH64 HASH64 "\n", 1, "the hash is not base64");
    pw_expect_error("alice:$6$" SALT12 "\n", 1, "no '$' between the salt and the hash");
    pw_expect_error("alice:$6$" SALT12 "$Xr99 N9ym\n", 1, "the hash is not base64");
    pw_expect_error_len("alice:$7$1\0"
                        "01$x\n",
                        16, 1, "a NUL byte (column 11)");
    pw_expect_error_len("ok:" V7_SECRET "\n\0\n", strlen("ok:" V7_SECRET) + 3, 2,
                        "a NUL byte (column 1)");

    /* a line of 70000 bytes, a user name of 65536: refused; a long comment is fine */
    char *big = repeat('a', 70000);
    pw_expect_error(big, 1, "line longer than 65791 bytes");
    char *name = repeat('u', 65536);
    char *line = malloc(70000);
    snprintf(line, 70000, "%s:%s\n", name, V7_SECRET);
    pw_expect_error(line, 1, "a user name longer than 65535 bytes");
    big[0] = '#';
    struct pwfile *f = pw_load_text(big);
    ck_assert_uint_eq(pwfile_count(f), 0);
    pwfile_unref(f);
    free(big);
    free(name);
    free(line);

    /* files that are not there or not files */
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/missing", dir);
    ck_assert_ptr_null(pwfile_load(missing, err, sizeof(err)));
    char want[300];
    snprintf(want, sizeof(want), "%s: No such file or directory", missing);
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(pwfile_load(dir, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: Is a directory", dir);
    ck_assert_str_eq(err, want);
}
END_TEST

/* Unpadded base64 (some tools drop the '='), 64-byte salts (mosquitto 2.1). */
START_TEST(test_pw_base64_forms)
{
    struct pwfile *f =
        pw_load_text("alice:$7$101$" SALT12 "$Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBb"
                     "CAbICS4xejTltonXWCtJNBvA+By+TXUqU6qCblO00w\n");
    ck_assert(pw_ok(f, "alice", "secret"));
    pwfile_unref(f);
}
END_TEST

/* The file may have 100k users: loaded, each found through the hash table. */
START_TEST(test_pw_many_users)
{
    size_t cap = 100000 * 160, n = 0;
    char *text = malloc(cap);
    for (int i = 0; i < 100000; i++)
        n += (size_t)snprintf(text + n, cap - n, "user%d:" V6_SECRET "\n", i);
    struct pwfile *f = pwfile_load(write_file_len(text, n), err, sizeof(err));
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_uint_eq(pwfile_count(f), 100000);
    ck_assert_ptr_nonnull(pwfile_find(f, "user0", 5));
    ck_assert_ptr_nonnull(pwfile_find(f, "user99999", 9));
    ck_assert_ptr_null(pwfile_find(f, "user100000", 10));
    ck_assert(pwfile_verify(f, "user4711", 8, "secret", 6));
    pwfile_unref(f);
    free(text);
}
END_TEST

START_TEST(test_pw_make)
{
    char line[512], line2[512];
    int n = pw_entry_make("alice", "secret", 6, 0, line, sizeof(line));
    ck_assert_int_gt(n, 0);
    ck_assert_uint_eq(strlen(line), (size_t)n);
    ck_assert_msg(strncmp(line, "alice:$7$1000$", 14) == 0, "%s", line);
    /* salt 12 bytes: 16 base64 characters; hash 64 bytes: 88 */
    const char *salt = line + 14, *hash = strchr(salt, '$');
    ck_assert_ptr_nonnull(hash);
    ck_assert_int_eq(hash - salt, 16);
    ck_assert_uint_eq(strlen(hash + 1), 88);
    ck_assert_int_gt(pw_entry_make("alice", "secret", 6, 0, line2, sizeof(line2)), 0);
    ck_assert_str_ne(line, line2); /* a new salt each time */
    ck_assert_int_gt(pw_entry_make("bob smith", "a\0b", 3, 5, line2, sizeof(line2)), 0);
    ck_assert_msg(strncmp(line2, "bob smith:$7$5$", 15) == 0, "%s", line2);

    char text[1200];
    snprintf(text, sizeof(text), "%s\n%s\n", line, line2);
    struct pwfile *f = pw_load_text(text);
    ck_assert(pw_ok(f, "alice", "secret"));
    ck_assert(!pw_ok(f, "alice", "Secret"));
    const struct pw_entry *e = pwfile_find(f, "bob smith", 9);
    ck_assert(pw_entry_verify(e, "a\0b", 3));
    ck_assert(!pw_entry_verify(e, "a", 1));
    pwfile_unref(f);

    /* names that would not read back, absurd counts, small buffers */
    static const char *const bad[] = {"", "a:b", "a\nb", "a\rb", "a\tb", " a", "a ", "#a", NULL};
    for (int i = 0; bad[i]; i++) {
        ck_assert_int_eq(pw_entry_make(bad[i], "x", 1, 5, line, sizeof(line)), -1);
        ck_assert(!pw_user_is_storable(bad[i]));
    }
    char *huge = repeat('u', 65536);
    ck_assert(!pw_user_is_storable(huge));
    huge[65535] = '\0';
    ck_assert(pw_user_is_storable(huge));
    free(huge);
    ck_assert(pw_user_is_storable("a#b c"));
    ck_assert_int_eq(pw_entry_make("a", "x", 1, PW_MAX_ITERATIONS + 1, line, sizeof(line)), -1);
    ck_assert_int_eq(pw_entry_make("alice", "x", 1, 5, line, 40), -1);
    ck_assert_str_eq(line, "");
}
END_TEST

/* Debian's mosquitto_passwd writes entries we read: $7$ (its default) and $6$ (-H sha512). */
START_TEST(test_pw_mosquitto_passwd)
{
    if (access("/usr/bin/mosquitto_passwd", X_OK) != 0) {
        printf("test_pw_mosquitto_passwd: no /usr/bin/mosquitto_passwd, skipped\n");
        return;
    }
    char path[128], cmd[1024];
    snprintf(path, sizeof(path), "%s/mosq.pw", dir);
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/mosquitto_passwd -c -b '%s' alice 'open sesame' && "
             "/usr/bin/mosquitto_passwd -H sha512 -b '%s' 'bob smith' 'p\xc3\xa4ss' && "
             "/usr/bin/mosquitto_passwd -I 7 -b '%s' carol c",
             path, path, path);
    ck_assert_int_eq(run(cmd), 0);
    struct pwfile *f = pwfile_load(path, err, sizeof(err));
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_uint_eq(pwfile_count(f), 3);
    ck_assert(pw_ok(f, "alice", "open sesame"));
    ck_assert(!pw_ok(f, "alice", "open sesame "));
    ck_assert(pw_ok(f, "bob smith", "p\xc3\xa4ss"));
    ck_assert(!pw_ok(f, "bob smith", "pass"));
    ck_assert(pw_ok(f, "carol", "c"));
    ck_assert(!pw_ok(f, "carol", "C"));
    pwfile_unref(f);
}
END_TEST

/* Our $7$ entry, checked by an independent PBKDF2 (Python's hashlib). */
START_TEST(test_pw_make_hashlib)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        printf("test_pw_make_hashlib: no /usr/bin/python3, skipped\n");
        return;
    }
    char line[512], cmd[1024];
    ck_assert_int_gt(pw_entry_make("alice", "s3cr3t w0rd", 11, 77, line, sizeof(line)), 0);
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 -c 'import sys,hashlib,base64\n"
             "u,h=sys.argv[1].split(\":\",1); _,k,n,s,d=h.split(\"$\")\n"
             "ok=k==\"7\" and len(base64.b64decode(s))==12 and hashlib.pbkdf2_hmac(\"sha512\","
             "sys.argv[2].encode(),base64.b64decode(s),int(n))==base64.b64decode(d)\n"
             "sys.exit(0 if ok and u==\"alice\" and n==\"77\" else 1)' '%s' '%s'",
             line, "s3cr3t w0rd");
    ck_assert_int_eq(run(cmd), 0);
    /* and the check can fail */
    snprintf(cmd + strlen(cmd) - strlen("'s3cr3t w0rd'"), 32, "'s3cr3t w0rD'");
    ck_assert_int_eq(run(cmd), 1);
}
END_TEST

/* ---- lunamq-ctl passwd ---- */

static char ctl[PATH_MAX];

static bool
find_ctl(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) return false;
    self[n] = '\0';
    snprintf(ctl, sizeof(ctl), "%s/lunamq-ctl", dirname(self));
    return access(ctl, X_OK) == 0;
}

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char *s = calloc(1, 1 << 20);
    size_t n = fread(s, 1, (1 << 20) - 1, f);
    s[n] = '\0';
    fclose(f);
    return s;
}

static int ctlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
ctlf(const char *fmt, ...)
{
    char args[1024], cmd[PATH_MAX + 1100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "'%s' passwd %s 2>/dev/null </dev/null", ctl, args);
    return run(cmd);
}

/* lunamq-ctl passwd FILE USER on a pseudo-terminal (Python's pty), typing pw1 then pw2.
 * Returns its exit status, or 3 when a password was echoed. */
static int
tty_passwd(const char *file, const char *user, const char *pw1, const char *pw2)
{
    char cmd[PATH_MAX + 2048];
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 -c 'import os,pty,sys,signal\n"
             "signal.alarm(20)\n"
             "pid,fd=pty.fork()\n"
             "if pid==0: os.execv(sys.argv[1],[sys.argv[1],\"passwd\",sys.argv[2],sys.argv[3]])\n"
             "out=b\"\"\n"
             "def expect(s):\n"
             "  global out\n"
             "  while s not in out: out+=os.read(fd,1024)\n"
             "expect(b\"Password: \"); os.write(fd,sys.argv[4].encode()+b\"\\n\")\n"
             "expect(b\"Reenter password: \"); os.write(fd,sys.argv[5].encode()+b\"\\n\")\n"
             "while True:\n"
             "  try: d=os.read(fd,1024)\n"
             "  except OSError: break\n"
             "  if not d: break\n"
             "  out+=d\n"
             "st=os.waitpid(pid,0)[1]\n"
             "sys.exit(3 if sys.argv[4].encode() in out else os.WEXITSTATUS(st))'"
             " '%s' '%s' '%s' '%s' '%s'",
             ctl, file, user, pw1, pw2);
    return run(cmd);
}

START_TEST(test_ctl_passwd)
{
    if (!find_ctl()) {
        printf("test_ctl_passwd: no lunamq-ctl beside the unit binary, skipped\n");
        return;
    }
    char a[128], b[128], link[128], cmd[PATH_MAX + 512];
    snprintf(a, sizeof(a), "%s/new.pw", dir);
    snprintf(b, sizeof(b), "%s/old.pw", dir);
    snprintf(link, sizeof(link), "%s/link.pw", dir);

    /* -c: a new file, mode 0600 */
    ck_assert_int_eq(ctlf("-c -b '%s' alice secret", a), 0);
    struct stat st;
    ck_assert_int_eq(stat(a, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    struct pwfile *f = pwfile_load(a, err, sizeof(err));
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert(pw_ok(f, "alice", "secret"));
    pwfile_unref(f);

    /* an existing file: comments and other lines kept, the user changed in place, a new
     * user appended, the mode kept */
    FILE *o = fopen(b, "w");
    fputs("# keep me\nbob:" V6_SECRET "\n\ncarol:" V7_SECRET "\n# end", o);
    fclose(o);
    chmod(b, 0640);
    ck_assert_int_eq(ctlf("-b '%s' bob 'new pw'", b), 0);
    ck_assert_int_eq(ctlf("-I 5 -b '%s' dave d", b), 0);
    char *text = slurp(b);
    ck_assert_msg(strncmp(text, "# keep me\nbob:$7$1000$", 22) == 0, "%s", text);
    ck_assert_msg(strstr(text, "\n\ncarol:" V7_SECRET "\n# end\ndave:$7$5$") != NULL, "%s", text);
    free(text);
    ck_assert_int_eq(stat(b, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0640);
    /* the password from stdin when it is not a terminal */
    snprintf(cmd, sizeof(cmd), "printf 'from stdin\\r\\n' | '%s' passwd '%s' erin", ctl, b);
    ck_assert_int_eq(run(cmd), 0);
    f = pwfile_load(b, err, sizeof(err));
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_uint_eq(pwfile_count(f), 4);
    ck_assert(pw_ok(f, "bob", "new pw"));
    ck_assert(!pw_ok(f, "bob", "secret"));
    ck_assert(pw_ok(f, "carol", "secret"));
    ck_assert(pw_ok(f, "dave", "d"));
    ck_assert(pw_ok(f, "erin", "from stdin"));
    pwfile_unref(f);

    /* from a terminal: asked twice, not echoed; a mismatch changes nothing */
    if (access("/usr/bin/python3", X_OK) == 0) {
        ck_assert_int_eq(tty_passwd(b, "gina", "typed pw", "typed pw"), 0);
        ck_assert_int_eq(tty_passwd(b, "hank", "one", "two"), 1);
        f = pwfile_load(b, err, sizeof(err));
        ck_assert_msg(f != NULL, "%s", err);
        ck_assert(pw_ok(f, "gina", "typed pw"));
        ck_assert_ptr_null(pwfile_find(f, "hank", 4));
        ck_assert_int_eq(ctlf("-D '%s' gina", b), 0);
        pwfile_unref(f);
    } else {
        printf("test_ctl_passwd: no /usr/bin/python3, the terminal part skipped\n");
    }

    /* -D deletes; a second time the user is not there */
    ck_assert_int_eq(ctlf("-D '%s' bob", b), 0);
    ck_assert_int_eq(ctlf("-D '%s' bob", b), 1);
    f = pwfile_load(b, err, sizeof(err));
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_ptr_null(pwfile_find(f, "bob", 3));
    ck_assert_uint_eq(pwfile_count(f), 3);
    pwfile_unref(f);

    /* through a symbolic link: the file it names is changed, the link stays */
    ck_assert_int_eq(symlink(b, link), 0);
    ck_assert_int_eq(ctlf("-b '%s' frank f", link), 0);
    ck_assert_int_eq(lstat(link, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
    text = slurp(b);
    ck_assert_ptr_nonnull(strstr(text, "\nfrank:$7$"));
    free(text);

    /* refusals */
    ck_assert_int_eq(ctlf("-c -D '%s' x", a), 2);
    ck_assert_int_eq(ctlf("-b -D '%s' x", a), 2);
    ck_assert_int_eq(ctlf("-b '%s' x", a), 2);          /* no password */
    ck_assert_int_eq(ctlf("-b '%s' x ''", a), 2);       /* empty password */
    ck_assert_int_eq(ctlf("-I 0 -b '%s' x y", a), 2);   /* iterations */
    ck_assert_int_eq(ctlf("-x '%s' x", a), 2);          /* unknown option */
    ck_assert_int_eq(ctlf("-b '%s' 'a:b' y", a), 1);    /* not storable */
    ck_assert_int_eq(ctlf("-b '%s/none' x y", dir), 1); /* no such file (-c creates) */
    ck_assert_int_eq(ctlf("'%s' x", a), 1);             /* stdin empty: no password */
    f = pwfile_load(a, err, sizeof(err));               /* untouched by all of that */
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_uint_eq(pwfile_count(f), 1);
    pwfile_unref(f);
}
END_TEST

/* ---- acl_file ---- */

static const char *acl_path;

static struct acl *
acl_load_text(const char *text)
{
    acl_path = write_file(text);
    struct acl *a = acl_load(acl_path, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    return a;
}

static void
acl_expect_error_len(const char *text, size_t len, int line, const char *msg)
{
    const char *p = write_file_len(text, len);
    ck_assert_ptr_null(acl_load(p, err, sizeof(err)));
    char want[1200];
    snprintf(want, sizeof(want), "%s:%d: %s", p, line, msg);
    ck_assert_str_eq(err, want);
}

static void
acl_expect_error(const char *text, int line, const char *msg)
{
    acl_expect_error_len(text, strlen(text), line, msg);
}

/* "FILE:LINE" of the loaded acl, for why */
static const char *
at(int line)
{
    static char s[4][160];
    static int i;
    char *p = s[i++ % 4];
    snprintf(p, sizeof(s[0]), "%s:%d", acl_path, line);
    return p;
}

static const char *why;

static bool
may(const struct acl_client *c, const char *topic, enum acl_access want)
{
    return acl_check(c, topic, strlen(topic), want, &why);
}

static bool
rd(const struct acl_client *c, const char *topic)
{
    return may(c, topic, ACL_READ);
}

static bool
wr(const struct acl_client *c, const char *topic)
{
    return may(c, topic, ACL_WRITE);
}

#define WHY_IS(line) ck_assert_str_eq(why, at(line))

START_TEST(test_acl_errors)
{
    acl_expect_error("topic read a\nfoo bar\n", 2,
                     "unknown keyword 'foo' (expected user, topic or pattern)");
    acl_expect_error("Topic read a\n", 1,
                     "unknown keyword 'Topic' (expected user, topic or pattern)");
    acl_expect_error("user\n", 1, "user without a name");
    acl_expect_error("user   \t \r\n", 1, "user without a name");
    acl_expect_error("topic\n", 1, "no topic after 'topic'");
    acl_expect_error("pattern  \n", 1, "no topic after 'pattern'");
    acl_expect_error("# c\n\ntopic read\n", 3, "no topic after 'read'");
    acl_expect_error("topic deny   \n", 1, "no topic after 'deny'");
    acl_expect_error("pattern write\n", 1, "no topic after 'write'");
    acl_expect_error("topic foo bar\n", 1,
                     "'foo' is not an access (read, write, readwrite or deny)");
    acl_expect_error("topic READ a\n", 1,
                     "'READ' is not an access (read, write, readwrite or deny)");
    acl_expect_error("topic read a/#/b\n", 1, "'a/#/b' is not a valid topic filter");
    acl_expect_error("topic read a+\n", 1, "'a+' is not a valid topic filter");
    acl_expect_error("topic a/b#\n", 1, "'a/b#' is not a valid topic filter");
    acl_expect_error("pattern write %c/#x\n", 1, "'%c/#x' is not a valid topic filter");
    acl_expect_error_len("topic read a\ntopic read b\0c\n", 27, 2, "a NUL byte (column 13)");
    acl_expect_error("topic read a\r\nuser x\r\nbogus\r\n", 3,
                     "unknown keyword 'bogus' (expected user, topic or pattern)");

    /* long lines: a topic longer than MQTT allows, a line past the reader's limit, a
     * filter too deep, a long word quoted shortened */
    char *line = malloc(140000);
    char *t = repeat('x', 65536);
    snprintf(line, 140000, "topic read %s\n", t);
    char want[200];
    snprintf(want, sizeof(want), "'%.64s...' is not a valid topic filter", t);
    acl_expect_error(line, 1, want);
    snprintf(line, 140000, "topic read %s%s\n", t, t);
    acl_expect_error(line, 1, "line longer than 65599 bytes");
    snprintf(line, 140000, "%s\n", t);
    acl_expect_error(
        line, 1,
        "unknown keyword 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' "
        "(expected user, topic or pattern)");
    strcpy(line, "topic read ");
    for (int i = 0; i < 1100; i++) strcat(line, "a/");
    strcat(line, "a\n");
    acl_expect_error(
        line, 1,
        "'a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/...' has more "
        "than 1024 levels");
    free(t);
    free(line);

    char missing[128], w2[300];
    snprintf(missing, sizeof(missing), "%s/none", dir);
    ck_assert_ptr_null(acl_load(missing, err, sizeof(err)));
    snprintf(w2, sizeof(w2), "%s: No such file or directory", missing);
    ck_assert_str_eq(err, w2);
}
END_TEST

/* What loads: comments anywhere, CRLF, tabs, long comments, a topic of 65535 bytes,
 * spaces inside user names and topics. */
START_TEST(test_acl_layout)
{
    char *big = repeat('x', 65535);
    size_t cap = 300000;
    char *text = malloc(cap);
    char *comment = repeat('c', 100000);
    comment[0] = '#';
    snprintf(text, cap,
             "# comment\r\n"
             "\r\n"
             "   # indented comment\n"
             "%s\n"
             "topic\tread\tpublic/#\r\n"
             "user   bob smith  \r\n"
             "topic read a b/c d\n"
             "topic readwrite %s\n"
             "  topic write  out  \n",
             comment, big);
    struct acl *a = acl_load_text(text);
    ck_assert_uint_eq(acl_rule_count(a), 4);
    struct acl_client *anon = acl_client_new(a, NULL, "c1");
    ck_assert(rd(anon, "public/x"));
    WHY_IS(5);
    ck_assert(!rd(anon, "a b/c d"));
    ck_assert_ptr_null(why);
    struct acl_client *bob = acl_client_new(a, "bob smith", "c2");
    ck_assert(rd(bob, "a b/c d"));
    WHY_IS(7);
    ck_assert(!wr(bob, "a b/c d"));
    ck_assert(rd(bob, big));
    ck_assert(wr(bob, "out"));
    ck_assert(!rd(bob, "public/x")); /* the anonymous block is not bob's */
    struct acl_client *bob2 = acl_client_new(a, "bob smith ", "c3");
    ck_assert(!wr(bob2, "out"));
    acl_client_free(anon);
    acl_client_free(bob);
    acl_client_free(bob2);
    acl_unref(a);
    free(big);
    free(text);
    free(comment);
}
END_TEST

static const char precedence_acl[] = "# anonymous clients\n"             /* 1 */
                                     "topic read public/#\n"             /* 2 */
                                     "topic deny public/secret\n"        /* 3 */
                                     "user alice\n"                      /* 4 */
                                     "topic readwrite alice/#\n"         /* 5 */
                                     "topic read shared/+\n"             /* 6 */
                                     "topic deny shared/private\n"       /* 7 */
                                     "topic write in/#\n"                /* 8 */
                                     "user bob smith\n"                  /* 9 */
                                     "topic shared/#\n"                  /* 10 */
                                     "pattern read clients/%c/#\n"       /* 11 */
                                     "pattern write users/%u/out\n"      /* 12 */
                                     "pattern deny clients/%c/blocked\n" /* 13 */
                                     "pattern readwrite dev-%c/x\n"      /* 14 */
                                     "pattern deny alice/private\n";     /* 15 */

START_TEST(test_acl_precedence)
{
    struct acl *a = acl_load_text(precedence_acl);
    ck_assert_uint_eq(acl_rule_count(a), 12);

    struct acl_client *anon = acl_client_new(a, NULL, "c1");
    ck_assert(rd(anon, "public/a"));
    WHY_IS(2);
    ck_assert(rd(anon, "public"));
    ck_assert(!wr(anon, "public/a"));
    ck_assert_ptr_null(why);
    ck_assert(!rd(anon, "public/secret")); /* deny first, whatever the order */
    WHY_IS(3);
    ck_assert(rd(anon, "public/secret/x"));
    ck_assert(!rd(anon, "alice/x"));
    ck_assert(rd(anon, "clients/c1/a")); /* patterns apply to anonymous clients */
    WHY_IS(11);
    ck_assert(!rd(anon, "clients/c1/blocked"));
    WHY_IS(13);
    ck_assert(!rd(anon, "clients/c2/a"));
    ck_assert(!wr(anon, "users//out")); /* %u: not for anonymous clients */
    ck_assert(!wr(anon, "users/%u/out"));
    ck_assert(wr(anon, "dev-c1/x"));
    WHY_IS(14);
    ck_assert(!wr(anon, "dev-c1x"));

    struct acl_client *alice = acl_client_new(a, "alice", "c2");
    ck_assert(rd(alice, "alice/x"));
    WHY_IS(5);
    ck_assert(wr(alice, "alice")); /* "alice/#" matches "alice" */
    ck_assert(rd(alice, "shared/a"));
    WHY_IS(6);
    ck_assert(!rd(alice, "shared/private"));
    WHY_IS(7);
    ck_assert(!wr(alice, "shared/a"));
    ck_assert(wr(alice, "in/a/b"));
    WHY_IS(8);
    ck_assert(!rd(alice, "in/a"));
    ck_assert(!rd(alice, "public/a")); /* the anonymous block is not hers */
    ck_assert(wr(alice, "users/alice/out"));
    WHY_IS(12);
    ck_assert(!rd(alice, "users/alice/out"));
    ck_assert(!wr(alice, "users/bob/out"));
    ck_assert(rd(alice, "clients/c2/x"));
    ck_assert(!rd(alice, "clients/c2/blocked"));
    /* her own grant beats a pattern's deny (step 1 before step 3) */
    ck_assert(rd(alice, "alice/private"));
    WHY_IS(5);

    struct acl_client *bob = acl_client_new(a, "bob smith", "c3");
    ck_assert(rd(bob, "shared/private"));
    WHY_IS(10);
    ck_assert(wr(bob, "shared"));
    ck_assert(!rd(bob, "alice/private"));
    WHY_IS(15);
    ck_assert(wr(bob, "users/bob smith/out"));

    /* a user without a block: the patterns only */
    struct acl_client *carol = acl_client_new(a, "carol", "c4");
    ck_assert(!rd(carol, "public/a"));
    ck_assert(!rd(carol, "shared/a"));
    ck_assert(rd(carol, "clients/c4/x/y"));
    ck_assert(wr(carol, "users/carol/out"));
    ck_assert(wr(carol, "dev-c4/x"));

    /* no client id: no pattern applies */
    struct acl_client *noid = acl_client_new(a, "alice", NULL);
    ck_assert(rd(noid, "alice/x"));
    ck_assert(!wr(noid, "users/alice/out"));
    ck_assert_ptr_null(why);

    acl_client_free(anon);
    acl_client_free(alice);
    acl_client_free(bob);
    acl_client_free(carol);
    acl_client_free(noid);
    acl_unref(a);
}
END_TEST

/* why names the first matching line of the file, not the most specific rule. */
START_TEST(test_acl_why)
{
    struct acl *a = acl_load_text("user w\n"
                                  "topic read a/#\n"
                                  "topic read a/b\n"
                                  "topic deny a/b/c\n"
                                  "topic deny a/+/c\n"
                                  "topic deny x/+\n"
                                  "topic deny x/#\n"
                                  "topic write a/b\n");
    struct acl_client *c = acl_client_new(a, "w", "id");
    ck_assert(rd(c, "a/b"));
    WHY_IS(2);
    ck_assert(wr(c, "a/b"));
    WHY_IS(8);
    ck_assert(!rd(c, "a/b/c"));
    WHY_IS(4);
    ck_assert(!rd(c, "a/z/c"));
    WHY_IS(5);
    ck_assert(!rd(c, "x/y"));
    WHY_IS(6);
    ck_assert(!rd(c, "x"));
    WHY_IS(7);
    ck_assert(!rd(c, "q"));
    ck_assert_ptr_null(why);
    ck_assert(!acl_check(c, "q", 1, ACL_READ, NULL)); /* why may be NULL */
    acl_client_free(c);
    acl_unref(a);
}
END_TEST

/* Two blocks of one user add up; an empty file refuses everything. */
START_TEST(test_acl_blocks)
{
    struct acl *a = acl_load_text("user a\ntopic read x\nuser b\ntopic read y\nuser a\ntopic z\n");
    struct acl_client *c = acl_client_new(a, "a", "i");
    ck_assert(rd(c, "x"));
    ck_assert(wr(c, "z"));
    ck_assert(!rd(c, "y"));
    acl_client_free(c);
    c = acl_client_new(a, NULL, "i"); /* no anonymous block, no patterns */
    ck_assert(!rd(c, "x"));
    acl_client_free(c);
    acl_unref(a);

    a = acl_load_text("# nothing\n");
    ck_assert_uint_eq(acl_rule_count(a), 0);
    c = acl_client_new(a, "a", "i");
    ck_assert(!rd(c, "x"));
    ck_assert(!wr(c, "$SYS/x"));
    ck_assert_int_eq(acl_check_subscribe(c, "#", 1, &why), ACL_SUB_NONE);
    acl_client_free(c);
    /* the client holds its own reference to the acl */
    c = acl_client_new(a, NULL, "i");
    acl_unref(a);
    ck_assert(!rd(c, "x"));
    acl_client_free(c);
    acl_client_free(NULL);
    acl_unref(NULL);
}
END_TEST

/* $ topics are not matched by a leading wildcard: $SYS needs a rule naming it. */
START_TEST(test_acl_dollar)
{
    struct acl *a = acl_load_text("user admin\n"
                                  "topic read #\n"
                                  "topic read $SYS/broker/#\n"
                                  "topic read +/x\n"
                                  "user other\n"
                                  "topic readwrite #\n"
                                  "pattern read +/%c\n"
                                  "pattern read %c/#\n");
    struct acl_client *admin = acl_client_new(a, "admin", "adm");
    ck_assert(rd(admin, "a/b"));
    ck_assert(rd(admin, "$SYS/broker/load"));
    WHY_IS(3);
    ck_assert(rd(admin, "$SYS/broker"));
    ck_assert(!rd(admin, "$SYS/other"));
    ck_assert(!rd(admin, "$SYS"));
    ck_assert(!rd(admin, "$x/x"));
    struct acl_client *other = acl_client_new(a, "other", "c");
    ck_assert(wr(other, "a"));
    ck_assert(!rd(other, "$SYS/x"));
    ck_assert(!rd(other, "$SYS/c")); /* "+/%c": leading wildcard */
    ck_assert(rd(other, "a/c"));
    struct acl_client *d = acl_client_new(a, "other", "$c"); /* "%c/#" -> "$c/#" */
    ck_assert(rd(d, "$c/x"));
    ck_assert(rd(d, "$c"));
    ck_assert(!rd(d, "$cx"));
    acl_client_free(admin);
    acl_client_free(other);
    acl_client_free(d);
    acl_unref(a);
}
END_TEST

/* Substitution: anywhere in a level, an id holding '/' spanning levels (mosquitto 2.0),
 * '+' or '#' in the id or username refusing everything the patterns would decide. */
START_TEST(test_acl_patterns)
{
    struct acl *a = acl_load_text("user alice\n"
                                  "topic read alice/#\n"
                                  "pattern read clients/%c/#\n"
                                  "pattern write x%cy/%u/z\n"
                                  "pattern read %u\n"
                                  "pattern read lit/%%c/%x\n"
                                  "pattern read none/#\n");
    struct acl_client *c = acl_client_new(a, "u", "a/b");
    ck_assert(rd(c, "clients/a/b/x"));
    ck_assert(rd(c, "clients/a/b"));
    ck_assert(!rd(c, "clients/a"));
    ck_assert(!rd(c, "clients/a/c"));
    ck_assert(!rd(c, "clients/a/bc"));
    ck_assert(wr(c, "xa/by/u/z"));
    ck_assert(!wr(c, "xa/b/u/z"));
    ck_assert(rd(c, "u"));
    ck_assert(!rd(c, "u/v"));
    ck_assert(rd(c, "lit/%a/b/%x")); /* "%%c": '%' then the id */
    ck_assert(rd(c, "none/x"));      /* a pattern without %c or %u applies to all */
    acl_client_free(c);

    c = acl_client_new(a, "", "id"); /* an empty username (MQTT 5 allows it) */
    ck_assert(wr(c, "xidy//z"));
    acl_client_free(c);

    /* '+' or '#' in the id or the username: step 2 refuses */
    c = acl_client_new(a, "alice", "a+b");
    ck_assert(rd(c, "alice/x")); /* her block still decides first */
    ck_assert(!rd(c, "clients/ab/x"));
    char want[200];
    snprintf(want, sizeof(want), "%s: + or # in the username or client id", acl_path);
    ck_assert_str_eq(why, want);
    ck_assert(!rd(c, "none/x"));
    ck_assert_int_eq(acl_check_subscribe(c, "none/#", 6, &why), ACL_SUB_NONE);
    ck_assert_str_eq(why, want);
    acl_client_free(c);
    c = acl_client_new(a, "u#", "ok");
    ck_assert(!rd(c, "none/x"));
    acl_client_free(c);
    acl_unref(a);
}
END_TEST

/* ---- the filter algebra ---- */

static bool
inter(const char *a, const char *b)
{
    bool r = acl_filter_intersects(a, strlen(a), b, strlen(b));
    ck_assert_msg(r == acl_filter_intersects(b, strlen(b), a, strlen(a)), "%s ~ %s", a, b);
    return r;
}

static bool
covers(const char *g, const char *f)
{
    return acl_filter_covers(g, strlen(g), f, strlen(f));
}

START_TEST(test_filter_table)
{
    ck_assert(inter("#", "a/b"));
    ck_assert(inter("a/#", "a"));
    ck_assert(inter("a/+", "+/b"));
    ck_assert(inter("+/+", "a/#"));
    ck_assert(!inter("+/+", "a"));
    ck_assert(!inter("a/b", "a/c"));
    ck_assert(!inter("a", "a/b"));
    ck_assert(inter("a//b", "a/+/b"));
    ck_assert(!inter("a//b", "a/x/b"));
    ck_assert(!inter("#", "$SYS/#"));
    ck_assert(!inter("+/x", "$SYS/x"));
    ck_assert(inter("$SYS/#", "$SYS/+"));
    ck_assert(inter("a/$x", "a/+")); /* '$' only matters at the first level */
    ck_assert(inter("/", "+/+"));
    ck_assert(inter("/", "#"));

    ck_assert(covers("#", "a/b/#"));
    ck_assert(covers("#", "+"));
    ck_assert(!covers("#", "$SYS/#"));
    ck_assert(covers("$SYS/#", "$SYS/broker/+"));
    ck_assert(covers("a/#", "a"));
    ck_assert(covers("a/#", "a/#"));
    ck_assert(!covers("a/+", "a/#")); /* "a/#" matches "a" */
    ck_assert(covers("+/#", "#"));    /* a topic has at least one level */
    ck_assert(!covers("+/+/#", "#"));
    ck_assert(!covers("a/+/#", "a/#"));
    ck_assert(covers("+", "a"));
    ck_assert(!covers("+", "$a"));
    ck_assert(!covers("a", "+"));
    ck_assert(covers("a//b", "a//b"));
    ck_assert(!covers("a//b", "a/+/b"));
    ck_assert(covers("a/+/b", "a//b"));
    ck_assert(!covers("a", "a/b"));
    ck_assert(!covers("a/b", "a"));
    ck_assert(covers("+/+", "/"));
}
END_TEST

/* Every valid filter of up to 3 levels over {a, $a, "", +, #} against every other,
 * compared with a brute force over every topic of up to 4 levels over {a, $a, "", z}. */
START_TEST(test_filter_brute_force)
{
    static const char *const lv[] = {"a", "$a", "", "+", "#"};
    static const char *const tl[] = {"a", "$a", "", "z"};
    char(*filters)[16] = malloc(200 * sizeof(*filters));
    char(*topics)[16] = malloc(400 * sizeof(*topics));
    int nf = 0, nt = 0;
    for (int depth = 1; depth <= 3; depth++) {
        int total = 1;
        for (int i = 0; i < depth; i++) total *= 5;
        for (int k = 0; k < total; k++) {
            char f[16] = "";
            for (int i = 0, x = k; i < depth; i++, x /= 5) {
                if (i) strcat(f, "/");
                strcat(f, lv[x % 5]);
            }
            if (topic_filter_is_valid(f, strlen(f))) strcpy(filters[nf++], f);
        }
    }
    for (int depth = 1; depth <= 4; depth++) {
        int total = 1;
        for (int i = 0; i < depth; i++) total *= 4;
        for (int k = 0; k < total; k++) {
            char t[16] = "";
            for (int i = 0, x = k; i < depth; i++, x /= 4) {
                if (i) strcat(t, "/");
                strcat(t, tl[x % 4]);
            }
            if (topic_name_is_valid(t, strlen(t))) strcpy(topics[nt++], t);
        }
    }
    ck_assert_int_gt(nf, 90);
    ck_assert_int_gt(nt, 300);
    for (int i = 0; i < nf; i++)
        for (int j = 0; j < nf; j++) {
            const char *g = filters[i], *f = filters[j];
            bool any = false, all = true;
            for (int k = 0; k < nt; k++) {
                const char *t = topics[k];
                bool mf = topic_matches(f, strlen(f), t, strlen(t));
                bool mg = topic_matches(g, strlen(g), t, strlen(t));
                if (mf && mg) any = true;
                if (mf && !mg) all = false;
            }
            ck_assert_msg(inter(g, f) == any, "intersects(%s, %s) should be %d", g, f, any);
            ck_assert_msg(covers(g, f) == all, "covers(%s, %s) should be %d", g, f, all);
        }
    free(filters);
    free(topics);
}
END_TEST

/* ---- SUBSCRIBE ---- */

static enum acl_sub
sub(const struct acl_client *c, const char *filter)
{
    return acl_check_subscribe(c, filter, strlen(filter), &why);
}

START_TEST(test_acl_subscribe)
{
    struct acl *a = acl_load_text(precedence_acl);
    struct acl_client *alice = acl_client_new(a, "alice", "c2");
    ck_assert_int_eq(sub(alice, "alice/#"), ACL_SUB_ALL);
    WHY_IS(5);
    ck_assert_int_eq(sub(alice, "alice/+/x"), ACL_SUB_ALL);
    ck_assert_int_eq(sub(alice, "#"), ACL_SUB_SOME);
    ck_assert_int_eq(sub(alice, "shared/+"), ACL_SUB_SOME); /* the deny intersects */
    WHY_IS(6);
    ck_assert_int_eq(sub(alice, "shared/a"), ACL_SUB_ALL);
    ck_assert_int_eq(sub(alice, "shared/private"), ACL_SUB_NONE);
    WHY_IS(7);
    ck_assert_int_eq(sub(alice, "in/#"), ACL_SUB_NONE); /* write only */
    ck_assert_ptr_null(why);
    ck_assert_int_eq(sub(alice, "clients/c2/#"), ACL_SUB_SOME); /* pattern deny in it */
    ck_assert_int_eq(sub(alice, "clients/c2/a/#"), ACL_SUB_ALL);
    WHY_IS(11);
    ck_assert_int_eq(sub(alice, "clients/c2/blocked"), ACL_SUB_NONE);
    WHY_IS(13);
    ck_assert_int_eq(sub(alice, "$SYS/#"), ACL_SUB_NONE);
    ck_assert_int_eq(sub(alice, "+/private"), ACL_SUB_SOME); /* alice/private: her grant */

    struct acl_client *anon = acl_client_new(a, NULL, "c1");
    ck_assert_int_eq(sub(anon, "public/#"), ACL_SUB_SOME);
    ck_assert_int_eq(sub(anon, "public/a/#"), ACL_SUB_ALL);
    WHY_IS(2);
    ck_assert_int_eq(sub(anon, "public/secret"), ACL_SUB_NONE);
    WHY_IS(3);
    ck_assert_int_eq(sub(anon, "users/+/out"), ACL_SUB_NONE);
    ck_assert_int_eq(sub(anon, "clients/c1/+"), ACL_SUB_SOME);

    struct acl_client *bob = acl_client_new(a, "bob smith", "c3");
    ck_assert_int_eq(sub(bob, "shared/#"), ACL_SUB_ALL);
    /* a pattern grant covers it, but a pattern deny inside: some */
    ck_assert_int_eq(sub(bob, "clients/c3/#"), ACL_SUB_SOME);
    ck_assert_int_eq(sub(bob, "alice/private"), ACL_SUB_NONE);
    WHY_IS(15);
    acl_client_free(alice);
    acl_client_free(anon);
    acl_client_free(bob);
    acl_unref(a);
}
END_TEST

/* ---- against mosquitto's loop ---- */

/* A transcription of mosquitto 2.0's mosquitto_acl_check_default over a rule list,
 * string substitution and all; the compiled trees must answer the same. */
struct ref_rule {
    int block; /* -1: anonymous, -2: pattern, else a user index */
    int access;
    int line;
    char filter[48];
};

static const char *const ref_users[] = {"u1", "u 2", "u3"};

struct ref_client {
    const char *user; /* NULL: anonymous */
    int user_idx;     /* into ref_users, -1: none */
    const char *id;
};

static const struct ref_client ref_clients[] = {
    {"u1", 0, "c1"},  {NULL, -1, "c2"}, {"u 2", 1, "a/b"}, {"u1", 0, "a"}, {"", -1, "c"},
    {"u3", 2, "c+1"}, {NULL, -1, "$s"}, {"zz", -1, "b"},   {"u3", 2, "a"}, {NULL, -1, "a/b"},
};

static bool
ref_matches(const struct ref_rule *r, const struct ref_client *c, const char *topic)
{
    char exp[256];
    const char *f = r->filter;
    if (r->block == -2) { /* substitute, as text */
        size_t n = 0;
        for (const char *p = r->filter; *p; p++) {
            if (p[0] == '%' && p[1] == 'c') {
                n += (size_t)snprintf(exp + n, sizeof(exp) - n, "%s", c->id);
                p++;
            } else if (p[0] == '%' && p[1] == 'u' && c->user) {
                n += (size_t)snprintf(exp + n, sizeof(exp) - n, "%s", c->user);
                p++;
            } else {
                exp[n++] = *p;
            }
        }
        exp[n] = '\0';
        f = exp;
    }
    return topic_matches(f, strlen(f), topic, strlen(topic));
}

/* 1 allowed, 0 refused; *line the deciding rule's (0: none). */
static int
ref_check(const struct ref_rule *rules, int n, const struct ref_client *c, const char *topic,
          int want, int *line)
{
    int blk = c->user ? c->user_idx : -1;
    *line = 0;
    if (!c->user || c->user_idx >= 0) {
        int deny = 0, grant = 0;
        for (int i = 0; i < n; i++) {
            const struct ref_rule *r = &rules[i];
            if (r->block != blk || (c->user && blk < 0)) continue;
            if (!ref_matches(r, c, topic)) continue;
            if (r->access == 0 && !deny) deny = r->line;
            if ((r->access & want) && !grant) grant = r->line;
        }
        if (deny || grant) {
            *line = deny ? deny : grant;
            return !deny;
        }
    }
    bool patterns = false;
    for (int i = 0; i < n; i++) patterns |= rules[i].block == -2;
    if (!patterns) return 0;
    if ((c->user && strpbrk(c->user, "+#")) || strpbrk(c->id, "+#")) {
        *line = -1;
        return 0;
    }
    int deny = 0, grant = 0;
    for (int i = 0; i < n; i++) {
        const struct ref_rule *r = &rules[i];
        if (r->block != -2) continue;
        if (strstr(r->filter, "%u") && !c->user) continue;
        if (!ref_matches(r, c, topic)) continue;
        if (r->access == 0 && !deny) deny = r->line;
        if ((r->access & want) && !grant) grant = r->line;
    }
    *line = deny ? deny : grant;
    return !deny && grant;
}

static unsigned rng = 12345;

static unsigned
rnd(unsigned n)
{
    rng = rng * 1103515245u + 12345u;
    return (rng >> 8) % n;
}

static void
random_filter(char *out, size_t cap, bool pattern, bool wild)
{
    static const char *const lv[] = {"a", "b", "$s", "", "c1"};
    static const char *const pv[] = {"%c", "%u", "x%c"};
    int depth = 1 + (int)rnd(3);
    out[0] = '\0';
    for (int i = 0; i < depth; i++) {
        if (i) strncat(out, "/", cap - strlen(out) - 1);
        unsigned k = rnd(wild ? 10 : 7);
        const char *l = k < 5   ? lv[k]
                        : k < 7 ? (pattern ? pv[rnd(3)] : lv[rnd(5)])
                        : k < 9 ? "+"
                                : "#";
        if (strcmp(l, "#") == 0 && i + 1 < depth) l = "+";
        strncat(out, l, cap - strlen(out) - 1);
    }
    if (!out[0]) strcpy(out, "a"); /* "" is no filter */
}

static void
random_topic(char *out, size_t cap)
{
    static const char *const lv[] = {"a", "b", "$s", "", "z", "c1", "xc1", "c", "xa", "u1", "u 2"};
    int depth = 1 + (int)rnd(4);
    out[0] = '\0';
    for (int i = 0; i < depth; i++) {
        if (i) strncat(out, "/", cap - strlen(out) - 1);
        strncat(out, lv[rnd(11)], cap - strlen(out) - 1);
    }
    if (!out[0]) strcpy(out, "a");
}

/* Topics of up to 3 levels for SUBSCRIBE's soundness: NONE must mean none readable,
 * ALL every one. */
static void
all_topics(char (*out)[24], int *n)
{
    static const char *const lv[] = {"a", "b", "$s", "", "z", "c1", "xc1"};
    *n = 0;
    for (int depth = 1; depth <= 3; depth++) {
        int total = 1;
        for (int i = 0; i < depth; i++) total *= 7;
        for (int k = 0; k < total; k++) {
            char t[24] = "";
            for (int i = 0, x = k; i < depth; i++, x /= 7) {
                if (i) strcat(t, "/");
                strcat(t, lv[x % 7]);
            }
            if (t[0]) strcpy(out[(*n)++], t);
        }
    }
}

START_TEST(test_acl_random_vs_mosquitto)
{
    static const char *const acc[] = {"deny", "read", "write", "readwrite"};
    char(*universe)[24] = malloc(500 * sizeof(*universe));
    int nu;
    all_topics(universe, &nu);
    for (int round = 0; round < 30; round++) {
        struct ref_rule rules[40];
        int n = 0, line = 0;
        char text[4096] = "";
        size_t tn = 0;
        int nblocks = 1 + (int)rnd(4); /* anonymous, then users */
        for (int b = -1; b < nblocks - 1; b++) {
            if (b >= 0) {
                tn += (size_t)snprintf(text + tn, sizeof(text) - tn, "user %s\n", ref_users[b]);
                line++;
            }
            int k = (int)rnd(8);
            for (int i = 0; i < k && n < 40; i++) {
                struct ref_rule *r = &rules[n++];
                bool pattern = rnd(3) == 0;
                r->block = pattern ? -2 : b;
                r->access = (int)rnd(4);
                r->line = ++line;
                random_filter(r->filter, sizeof(r->filter), pattern, true);
                tn += (size_t)snprintf(text + tn, sizeof(text) - tn, "%s %s %s\n",
                                       pattern ? "pattern" : "topic", acc[r->access], r->filter);
            }
        }
        struct acl *a = acl_load_text(text);
        ck_assert_uint_eq(acl_rule_count(a), (size_t)n);
        for (size_t ci = 0; ci < sizeof(ref_clients) / sizeof(ref_clients[0]); ci++) {
            const struct ref_client *rc = &ref_clients[ci];
            struct acl_client *c = acl_client_new(a, rc->user, rc->id);
            for (int k = 0; k < 300; k++) {
                char t[64];
                random_topic(t, sizeof(t));
                for (int want = 1; want <= 2; want++) {
                    int rl;
                    int expect = ref_check(rules, n, rc, t, want, &rl);
                    bool got = may(c, t, (enum acl_access)want);
                    ck_assert_msg(got == expect, "round %d client %zu %s %s: %d, mosquitto %d\n%s",
                                  round, ci, want == 1 ? "read" : "write", t, got, expect, text);
                    if (rl > 0)
                        ck_assert_msg(why && strcmp(why, at(rl)) == 0,
                                      "%s %s: why %s, want line %d\n%s", t,
                                      want == 1 ? "read" : "write", why ? why : "NULL", rl, text);
                    else if (rl == 0)
                        ck_assert_ptr_null(why);
                }
            }
            for (int k = 0; k < 15; k++) {
                char f[64];
                random_filter(f, sizeof(f), false, true);
                enum acl_sub s = sub(c, f);
                if (s == ACL_SUB_SOME) continue;
                for (int u = 0; u < nu; u++) {
                    if (!topic_matches(f, strlen(f), universe[u], strlen(universe[u]))) continue;
                    int rl;
                    int r = ref_check(rules, n, rc, universe[u], ACL_READ, &rl);
                    ck_assert_msg(r == (s == ACL_SUB_ALL), "subscribe %s: %s, but %s is %s\n%s", f,
                                  s == ACL_SUB_ALL ? "all" : "none", universe[u],
                                  r ? "readable" : "not readable", text);
                }
            }
            acl_client_free(c);
        }
        acl_unref(a);
    }
    free(universe);
}
END_TEST

/* A thousand users of one rule each, and one user of a thousand rules. */
START_TEST(test_acl_thousand_rules)
{
    size_t cap = 1 << 20, n = 0;
    char *text = malloc(cap);
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(text + n, cap - n, "user dev%d\ntopic readwrite dev/%d/#\n", i, i);
    n += (size_t)snprintf(text + n, cap - n, "user many\n");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(text + n, cap - n, "topic %s site/%d/+/%s\n",
                              i % 10 == 9 ? "deny" : "read", i, i % 2 ? "temp" : "#");
    n += (size_t)snprintf(text + n, cap - n, "pattern write cmd/%%c/#\n");
    struct acl *a = acl_load_text(text);
    ck_assert_uint_eq(acl_rule_count(a), 2001);
    for (int i = 0; i < 1000; i += 7) {
        char user[32], t[64], other[64];
        snprintf(user, sizeof(user), "dev%d", i);
        snprintf(t, sizeof(t), "dev/%d/x/y", i);
        snprintf(other, sizeof(other), "dev/%d/x", (i + 1) % 1000);
        struct acl_client *c = acl_client_new(a, user, user);
        ck_assert(wr(c, t));
        ck_assert(!wr(c, other));
        snprintf(t, sizeof(t), "cmd/dev%d/go", i);
        ck_assert(wr(c, t));
        ck_assert(!wr(c, "cmd/dev/go"));
        acl_client_free(c);
    }
    struct acl_client *m = acl_client_new(a, "many", "m");
    for (int i = 0; i < 1000; i++) {
        char t[64];
        snprintf(t, sizeof(t), "site/%d/a/temp", i);
        bool want = i % 10 != 9;
        ck_assert_msg(rd(m, t) == want, "%s", t);
        snprintf(t, sizeof(t), "site/%d/a/hum", i);
        ck_assert_msg(rd(m, t) == (want && i % 2 == 0), "%s", t);
    }
    ck_assert(!rd(m, "site/1000/a/temp"));
    ck_assert_int_eq(sub(m, "site/#"), ACL_SUB_SOME);
    ck_assert_int_eq(sub(m, "site/2/#"), ACL_SUB_SOME); /* "site/2" is not readable */
    ck_assert_int_eq(sub(m, "site/2/+/#"), ACL_SUB_ALL);
    ck_assert_int_eq(sub(m, "site/9/#"), ACL_SUB_NONE);
    acl_client_free(m);
    acl_unref(a);
    free(text);
}
END_TEST

/* ---- the verifier threads (broker/auth/verify.c) ---- */
struct vjob {
    struct verify_job job;
    int *done;
    int result; /* -1: cancelled, else ok */
};

static void
vjob_done(struct verify_job *j)
{
    struct vjob *v = (struct vjob *)j;
    v->result = j->cancelled ? -1 : j->ok;
    ++*v->done;
}

START_TEST(test_verifier)
{
    struct pwfile *f = pw_load_text("dev:" V6_SECRET "\n");
    struct event_base *base = event_base_new();
    struct verifier *v = verifier_new(base, 3);
    ck_assert_ptr_nonnull(v);
    int done = 0;
    struct vjob jobs[4];
    const char *pw[] = {"secret", "wrong", "secret", "secret"};
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct vjob){.job = {.file = f,
                                        .user = "dev",
                                        .ulen = 3,
                                        .password = pw[i],
                                        .len = strlen(pw[i]),
                                        .done = vjob_done},
                                .done = &done};
        /* a bounded queue: the fourth is not taken while three wait */
        ck_assert(verifier_submit(v, &jobs[i].job) == (i < 3));
    }
    ck_assert_uint_eq(verifier_pending(v), 3);
    verifier_cancel(v, &jobs[2].job); /* its owner went away: done() still runs */
    while (done < 3) event_base_loop(base, EVLOOP_ONCE);
    ck_assert_int_eq(jobs[0].result, 1);
    ck_assert_int_eq(jobs[1].result, 0);
    ck_assert_int_eq(jobs[2].result, -1);
    ck_assert_uint_eq(verifier_pending(v), 0);
    /* jobs left at shutdown are finished as cancelled */
    ck_assert(verifier_submit(v, &jobs[3].job));
    verifier_cancel(v, &jobs[3].job);
    verifier_free(v);
    ck_assert_int_eq(done, 4);
    ck_assert_int_eq(jobs[3].result, -1);
    event_base_free(base);
    pwfile_unref(f);
}
END_TEST

Suite *
suite_auth(void)
{
    Suite *s = suite_create("auth");
    TCase *pw = tcase_create("password_file");
    tcase_add_checked_fixture(pw, setup, teardown);
    tcase_set_timeout(pw, 30);
    tcase_add_test(pw, test_pw_known_answers);
    tcase_add_test(pw, test_pw_unknown_user);
    tcase_add_test(pw, test_pw_layout);
    tcase_add_test(pw, test_pw_duplicate);
    tcase_add_test(pw, test_pw_errors);
    tcase_add_test(pw, test_pw_base64_forms);
    tcase_add_test(pw, test_pw_many_users);
    tcase_add_test(pw, test_pw_make);
    tcase_add_test(pw, test_pw_mosquitto_passwd);
    tcase_add_test(pw, test_pw_make_hashlib);
    tcase_add_test(pw, test_verifier);
    suite_add_tcase(s, pw);

    TCase *ctl_tc = tcase_create("ctl_passwd");
    tcase_add_checked_fixture(ctl_tc, setup, teardown);
    tcase_set_timeout(ctl_tc, 30);
    tcase_add_test(ctl_tc, test_ctl_passwd);
    suite_add_tcase(s, ctl_tc);

    TCase *acl = tcase_create("acl_file");
    tcase_add_checked_fixture(acl, setup, teardown);
    tcase_set_timeout(acl, 60);
    tcase_add_test(acl, test_acl_errors);
    tcase_add_test(acl, test_acl_layout);
    tcase_add_test(acl, test_acl_precedence);
    tcase_add_test(acl, test_acl_why);
    tcase_add_test(acl, test_acl_blocks);
    tcase_add_test(acl, test_acl_dollar);
    tcase_add_test(acl, test_acl_patterns);
    tcase_add_test(acl, test_acl_subscribe);
    tcase_add_test(acl, test_acl_random_vs_mosquitto);
    tcase_add_test(acl, test_acl_thousand_rules);
    suite_add_tcase(s, acl);

    TCase *flt = tcase_create("filters");
    tcase_add_test(flt, test_filter_table);
    tcase_add_test(flt, test_filter_brute_force);
    suite_add_tcase(s, flt);
    return s;
}
