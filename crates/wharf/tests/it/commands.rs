//! Reply codes and reply forms, command by command.

use std::io::Read;

use wharf_testkit::Ftp;

use crate::backend::{Backend, served, writable_on};

fn banner_login_and_quit(b: Backend) {
    let s = served(b).start();
    let mut ftp = Ftp::connect(s.addr);
    assert_eq!(ftp.banner.code, 220);
    assert_eq!(
        ftp.cmd("PWD").code,
        530,
        "commands before login are refused"
    );
    assert_eq!(ftp.cmd("PASS x").code, 503, "PASS before USER");
    ftp.login("anonymous", "me@example.net");
    let r = ftp.cmd("PWD");
    assert_eq!(r.text, "257 \"/\" is the current directory.");
    assert_eq!(ftp.cmd("QUIT").code, 221);
    assert!(ftp.is_closed());
}

fn syntax_and_sequence_errors(b: Backend) {
    let s = served(b).start();
    let mut ftp = Ftp::login_to(s.addr, "ftp", "x");
    assert_eq!(ftp.cmd("FOO").code, 500);
    assert_eq!(ftp.cmd("").code, 500);
    assert_eq!(ftp.cmd("AUTH TLS").code, 502);
    assert_eq!(ftp.cmd("RETR").code, 501);
    assert_eq!(ftp.cmd("PORT 1,2,3").code, 501);
    assert_eq!(ftp.cmd("TYPE E").code, 504);
    assert_eq!(ftp.cmd("MODE B").code, 504);
    assert_eq!(ftp.cmd("STRU R").code, 504);
    assert_eq!(ftp.cmd("TYPE X").code, 501);
    assert_eq!(ftp.cmd("RNTO b").code, 503);
    assert_eq!(ftp.cmd("EPRT |3|x|5|").code, 522);
    assert_eq!(
        ftp.cmd("RETR x").code,
        550,
        "a missing file, before PORT/PASV: the file is what is wrong"
    );
    assert_eq!(ftp.cmd("LIST nodir").code, 550);
    assert_eq!(ftp.cmd("STOR nodir/x").code, 550);
    assert_eq!(ftp.cmd("LIST").code, 425, "no data connection set up");
    for ok in [
        "TYPE A", "TYPE A N", "TYPE L 8", "TYPE I", "MODE S", "STRU F", "NOOP",
    ] {
        assert_eq!(ftp.cmd(ok).code, 200, "{ok}");
    }
    assert_eq!(ftp.cmd("ALLO 10").code, 202);
    assert_eq!(ftp.cmd("ACCT x").code, 202);
    assert_eq!(ftp.cmd("SYST").text, "215 UNIX Type: L8");
    assert_eq!(ftp.cmd("OPTS UTF8 ON").code, 200);
    assert_eq!(ftp.cmd("OPTS BOGUS").code, 501);
}

fn feat_is_rfc2389_form(b: Backend) {
    let s = served(b).start();
    let mut ftp = Ftp::connect(s.addr);
    let r = ftp.cmd("FEAT");
    assert_eq!(
        r.text,
        "211-Features:\n EPRT\n EPSV\n HASH SHA-1;SHA-256*;SHA-512;MD5;CRC32\n HOST\n MDTM\n MFMT\n MLST type*;size*;modify*;perm*;UNIX.mode;\n REST STREAM\n SIZE\n TVFS\n UTF8\n XCRC\n XMD5\n XSHA1\n XSHA256\n XSHA512\n211 End"
    );
    ftp.login("ftp", "x");
    assert_eq!(
        ftp.cmd("OPTS MLST size;type;").text,
        "200 MLST OPTS size;type;"
    );
    assert!(
        ftp.cmd("FEAT")
            .text
            .contains(" MLST type*;size*;modify;perm;UNIX.mode;")
    );
}

fn help_stat_host_site_help(b: Backend) {
    let s = served(b).start();
    let mut ftp = Ftp::connect(s.addr);
    assert_eq!(ftp.cmd("HOST ftp.example.net").code, 220);
    let help = ftp.cmd("HELP");
    assert_eq!(help.code, 214);
    assert!(
        help.text.contains("RETR") && help.text.ends_with("214 Help OK."),
        "{}",
        help.text
    );
    assert_eq!(ftp.cmd("HELP MLSD").code, 214);
    assert_eq!(ftp.cmd("HELP XYZZY").code, 502);
    ftp.login("ftp", "x");
    assert_eq!(ftp.cmd("HOST other").code, 503, "HOST after login");
    let stat = ftp.cmd("STAT");
    assert_eq!(stat.code, 211);
    assert!(
        stat.text.contains("Logged in as anonymous"),
        "{}",
        stat.text
    );
    let site = ftp.cmd("SITE HELP");
    assert_eq!(site.code, 214);
    // Objects have no permission bits: on S3, SITE CHMOD is not offered.
    assert_eq!(
        site.text.contains("CHMOD"),
        b != Backend::S3,
        "{}",
        site.text
    );
    assert_eq!(ftp.cmd("SITE FROB").code, 500);
}

fn directories_mkd_cwd_cdup_rmd(b: Backend) {
    let s = writable_on(b);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.cmd("MKD a\"b").text, "257 \"/a\"\"b\" created.");
    assert_eq!(ftp.cmd("MKD a\"b").code, 550, "exists");
    assert!(s.is_dir("a\"b"));
    assert_eq!(ftp.cmd("CWD a\"b").code, 250);
    assert_eq!(
        ftp.cmd("PWD").text,
        "257 \"/a\"\"b\" is the current directory."
    );
    assert_eq!(ftp.cmd("XMKD sub").code, 257);
    assert_eq!(ftp.cmd("CDUP").code, 200);
    assert_eq!(ftp.cmd("PWD").text, "257 \"/\" is the current directory.");
    assert_eq!(ftp.cmd("CDUP").code, 200, "CDUP at the root stays there");
    assert_eq!(ftp.cmd("CWD missing").code, 550);
    assert_eq!(ftp.cmd("RMD a\"b").code, 550, "not empty");
    assert_eq!(ftp.cmd("RMD a\"b/sub").code, 250);
    assert_eq!(ftp.cmd("RMD a\"b").code, 250);
    assert!(!s.exists("a\"b"));
}

fn size_mdtm_mfmt_chmod_dele_rename(b: Backend) {
    let s = writable_on(b);
    s.put("f.txt", b"12345");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.cmd("SIZE f.txt").text, "213 5");
    assert_eq!(ftp.cmd("SIZE /").code, 550);
    assert_eq!(ftp.cmd("SIZE nope").code, 550);
    assert_eq!(
        ftp.cmd("MFMT 20200102030405 f.txt").text,
        "213 Modify=20200102030405; f.txt"
    );
    assert_eq!(
        ftp.cmd("MDTM f.txt").text,
        "213 20200102030405",
        "MDTM in UTC"
    );
    assert_eq!(ftp.cmd("MFMT 20201302030405 f.txt").code, 501);
    if b == Backend::S3 {
        assert_eq!(ftp.cmd("SITE CHMOD 600 f.txt").code, 502);
    } else {
        assert_eq!(ftp.cmd("SITE CHMOD 600 f.txt").code, 200);
        assert_eq!(s.mode("f.txt") & 0o777, 0o600);
    }
    assert_eq!(ftp.cmd("RNFR f.txt").code, 350);
    assert_eq!(ftp.cmd("RNTO g.txt").code, 250);
    assert!(s.exists("g.txt") && !s.exists("f.txt"));
    assert_eq!(ftp.cmd("RNFR nope").code, 550);
    assert_eq!(ftp.cmd("RNFR g.txt").code, 350);
    assert_eq!(ftp.cmd("NOOP").code, 200);
    assert_eq!(
        ftp.cmd("RNTO h.txt").code,
        503,
        "RNFR is cleared by the next command"
    );
    assert_eq!(ftp.cmd("DELE g.txt").code, 250);
    assert_eq!(ftp.cmd("DELE g.txt").code, 550);
    assert!(!s.exists("g.txt"));
}

fn read_only_refuses_writes(b: Backend) {
    let s = served(b).start();
    s.put("f.txt", b"x");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    for cmd in [
        "MKD d",
        "DELE f.txt",
        "RMD d",
        "RNFR f.txt",
        "SITE CHMOD 777 f.txt",
        "MFMT 20200101000000 f.txt",
    ] {
        // What the storage cannot do at all is 502 before it is a matter of permission.
        let code = if b == Backend::S3 && cmd.starts_with("SITE CHMOD") {
            502
        } else {
            550
        };
        assert_eq!(ftp.cmd(cmd).code, code, "{cmd}");
    }
    let _data = ftp.passive();
    assert_eq!(ftp.cmd("STOR new").code, 550);
    assert!(!s.exists("new"));
}

fn listings_list_nlst_mlsd_mlst(b: Backend) {
    let s = served(b).start();
    s.put("a.txt", b"hello");
    s.put(".hidden", b"h");
    s.mkdir("dir");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let (nlst, r) = ftp.download("NLST");
    assert_eq!(r.code, 226);
    assert_eq!(
        nlst, b".hidden\r\na.txt\r\ndir\r\n",
        "NLST gives bare names"
    );
    for list in ["LIST", "LIST -la", "LIST -a", "LIST -l ."] {
        let (text, r) = ftp.download(list);
        assert_eq!(r.code, 226, "{list}");
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3, "{list}: {text}");
        assert!(
            lines[1].starts_with("-rw-r--r--   1 ftp      ftp                 5 "),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with(" a.txt"));
        assert!(lines[2].starts_with('d') && lines[2].ends_with(" dir"));
    }
    let (text, _) = ftp.download("LIST a.txt");
    assert!(String::from_utf8(text).unwrap().ends_with(" a.txt\r\n"));
    let (mlsd, r) = ftp.download("MLSD");
    assert_eq!(r.code, 226);
    let mlsd = String::from_utf8(mlsd).unwrap();
    assert!(mlsd.starts_with("type=cdir;"), "{mlsd}");
    assert!(mlsd.contains("type=file;size=5;modify="), "{mlsd}");
    assert!(mlsd.contains(";perm=r; a.txt\r\n"), "{mlsd}");
    assert!(mlsd.contains("type=dir;"), "{mlsd}");
    let _d = ftp.passive();
    assert_eq!(ftp.cmd("MLSD a.txt").code, 501);
    let r = ftp.cmd("MLST a.txt");
    let lines: Vec<&str> = r.text.lines().collect();
    assert_eq!(lines[0], "250-Listing /a.txt");
    assert!(
        lines[1].starts_with(" type=file;size=5;modify=") && lines[1].ends_with(" /a.txt"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "250 End");
    let _d = ftp.passive();
    assert_eq!(ftp.cmd("LIST nope").code, 550);
    let st = ftp.cmd("STAT .");
    assert_eq!(st.code, 213);
    assert!(st.text.contains(" a.txt"), "{}", st.text);
}

fn rest_is_cleared_by_the_next_command(b: Backend) {
    let s = served(b).start();
    s.put("f", b"0123456789");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let (data, _) = ftp.download_from("RETR f", 4);
    assert_eq!(data, b"456789");
    let _d = ftp.passive();
    assert_eq!(ftp.cmd("REST 4").code, 350);
    assert_eq!(ftp.cmd("NOOP").code, 200);
    let mut data = ftp.passive();
    assert_eq!(ftp.cmd("RETR f").code, 150);
    let mut all = Vec::new();
    data.read_to_end(&mut all).unwrap();
    assert_eq!(ftp.read_reply().code, 226);
    assert_eq!(
        all, b"0123456789",
        "REST must not survive the command after it"
    );
    let mut data = ftp.passive();
    assert_eq!(ftp.cmd("REST 99").code, 350);
    assert_eq!(ftp.cmd("RETR f").code, 554);
    let mut sink = Vec::new();
    let _ = data.read_to_end(&mut sink);
    assert_eq!(ftp.cmd("TYPE A").code, 200);
    assert_eq!(ftp.cmd("REST 4").code, 504, "REST refused in ASCII mode");
}

fn rein_logs_out(b: Backend) {
    let s = served(b).start();
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.cmd("REIN").code, 220);
    assert_eq!(ftp.cmd("PWD").code, 530);
    ftp.login("anonymous", "x");
    assert_eq!(ftp.cmd("PWD").code, 257);
}

fn rename_never_replaces_without_delete_permission(b: Backend) {
    let hash = "$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/";
    let s = served(b)
        .config(&format!(
            "[[user]]\nname = \"r\"\npassword_hash = \"{hash}\"\npermissions = [\"read\", \"rename\"]\n\
             [[user]]\nname = \"d\"\npassword_hash = \"{hash}\"\npermissions = [\"all\"]\n"
        ))
        .start();
    s.put("junk", b"junk");
    s.put("important", b"important");
    let mut ftp = Ftp::login_to(s.addr, "r", "pw");
    assert_eq!(ftp.cmd("RNFR junk").code, 350);
    assert_eq!(ftp.cmd("RNTO important").code, 550);
    assert_eq!(s.read("important"), b"important");
    assert_eq!(ftp.cmd("RNFR junk").code, 350);
    assert_eq!(ftp.cmd("RNTO other").code, 250, "a free name is fine");
    let mut admin = Ftp::login_to(s.addr, "d", "pw");
    assert_eq!(admin.cmd("RNFR other").code, 350);
    assert_eq!(
        admin.cmd("RNTO important").code,
        250,
        "with delete permission it replaces"
    );
    assert_eq!(s.read("important"), b"junk");
}

fn site_chmod_refuses_special_bits(b: Backend) {
    let s = writable_on(b);
    s.put("x", b"x");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.cmd("SITE CHMOD 4755 x").code, 501);
    let code = if b == Backend::S3 { 502 } else { 200 };
    assert_eq!(ftp.cmd("SITE CHMOD 755 x").code, code);
}

/// `mget f00*.dat` in BSD ftp, inetutils and Windows ftp sends `NLST f00*.dat`: patterns in
/// the last component are expanded (names keep the directory part the client wrote), a pattern
/// that matches nothing is 550, a name that exists as written is itself, and no pattern leaves
/// the jail.
fn globs_in_nlst_and_list(b: Backend) {
    let s = served(b).start();
    for name in [
        "f001.dat",
        "f002.dat",
        "f010.txt",
        "sub/f003.dat",
        "sub/g.dat",
        "odd*name",
    ] {
        s.put(name, b"x");
    }
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let (names, r) = ftp.download("NLST f00*.dat");
    assert_eq!(r.code, 226);
    assert_eq!(names, b"f001.dat\r\nf002.dat\r\n");
    let (names, _) = ftp.download("NLST sub/[fg]*.dat");
    assert_eq!(names, b"sub/f003.dat\r\nsub/g.dat\r\n");
    let (names, _) = ftp.download("NLST f0?0.txt");
    assert_eq!(names, b"f010.txt\r\n");
    let (long, _) = ftp.download("LIST *.txt");
    let long = String::from_utf8(long).unwrap();
    assert_eq!(long.lines().count(), 1, "{long}");
    assert!(long.trim_end().ends_with(" f010.txt"), "{long}");
    let (literal, _) = ftp.download("NLST odd*name");
    assert_eq!(literal, b"odd*name\r\n", "an existing name is itself");
    let _d = ftp.passive();
    assert_eq!(ftp.cmd("NLST *.none").code, 550);
    let _d = ftp.passive();
    assert_eq!(ftp.cmd("NLST ../*").code, 550, "no pattern leaves the root");
}

/// A user database that cannot answer: the login is refused with 421 and the session ends; it
/// never reads as a wrong password (530), and never as a login.
#[test]
fn an_unavailable_user_database_is_never_a_login() {
    use wharf_server::storage::BoxFuture;
    use wharf_server::{Account, AuthError, Authenticator, Credentials};
    struct Down;
    impl Authenticator for Down {
        fn authenticate(&self, _c: Credentials) -> BoxFuture<'_, Result<Account, AuthError>> {
            Box::pin(async { Err(AuthError::Unavailable("connection refused".into())) })
        }
    }
    let s = served(Backend::Mem).auth(std::sync::Arc::new(Down)).start();
    let mut ftp = Ftp::connect(s.addr);
    assert_eq!(ftp.cmd("USER alice").code, 331);
    let r = ftp.cmd("PASS secret");
    assert_eq!(r.code, 421, "{}", r.text);
    assert!(ftp.is_closed());
}

/// A user database that never answers: after `backend_timeout` the login is 421, and the
/// session (and its place in the limits) is not held forever.
#[test]
fn a_hung_user_database_times_out() {
    use wharf_server::storage::BoxFuture;
    use wharf_server::{Account, AuthError, Authenticator, Credentials};
    struct Hung;
    impl Authenticator for Hung {
        fn authenticate(&self, _c: Credentials) -> BoxFuture<'_, Result<Account, AuthError>> {
            Box::pin(std::future::pending())
        }
    }
    let s = served(Backend::Mem)
        .config("[limits]\nbackend_timeout = 1\n")
        .auth(std::sync::Arc::new(Hung))
        .start();
    let mut ftp = Ftp::connect(s.addr);
    assert_eq!(ftp.cmd("USER alice").code, 331);
    let r = ftp.cmd("PASS secret");
    assert_eq!(r.code, 421, "{}", r.text);
    assert!(ftp.is_closed());
}

crate::both!(
    globs_in_nlst_and_list,
    banner_login_and_quit,
    syntax_and_sequence_errors,
    feat_is_rfc2389_form,
    help_stat_host_site_help,
    directories_mkd_cwd_cdup_rmd,
    size_mdtm_mfmt_chmod_dele_rename,
    read_only_refuses_writes,
    listings_list_nlst_mlsd_mlst,
    rest_is_cleared_by_the_next_command,
    rein_logs_out,
    rename_never_replaces_without_delete_permission,
    site_chmod_refuses_special_bits,
);
