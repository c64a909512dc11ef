//! The server-software table: which product a banner names, and each product's own words for
//! the settings the troubleshooter's advice points at.

/// FTP server software, as the banner and SYST tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Software {
    Wharf,
    Vsftpd,
    Proftpd,
    PureFtpd,
    FileZilla,
    Iis,
    Pyftpdlib,
    Rclone,
    Sftpgo,
    FtpSrv,
    ServU,
    Titan,
    CrushFtp,
    Cerberus,
    WingFtp,
    Unftp,
    Unknown,
}

impl Software {
    /// Recognises the server from its banner and SYST reply (the names as the products write
    /// them in their default welcome messages).
    pub fn identify(banner: &str, syst: &str) -> Software {
        // Product names first: a server's configured name (ProFTPD's `ServerName`) can contain
        // anything, "wharf" included.
        let text = format!("{banner}\n{syst}").to_ascii_lowercase();
        const BY_NAME: &[(&str, Software)] = &[
            ("vsftpd", Software::Vsftpd),
            ("proftpd", Software::Proftpd),
            ("pure-ftpd", Software::PureFtpd),
            ("filezilla", Software::FileZilla),
            ("microsoft ftp", Software::Iis),
            ("pyftpdlib", Software::Pyftpdlib),
            ("rclone", Software::Rclone),
            ("sftpgo", Software::Sftpgo),
            ("ftp-srv", Software::FtpSrv),
            ("serv-u", Software::ServU),
            ("titan ftp", Software::Titan),
            ("crushftp", Software::CrushFtp),
            ("cerberus ftp", Software::Cerberus),
            ("wing ftp", Software::WingFtp),
            ("unftp", Software::Unftp),
            ("wharf", Software::Wharf),
        ];
        if let Some((_, sw)) = BY_NAME.iter().find(|(name, _)| text.contains(name)) {
            return *sw;
        }
        if syst.contains("Windows_NT") {
            Software::Iis
        } else {
            Software::Unknown
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Software::Wharf => "Wharf",
            Software::Vsftpd => "vsftpd",
            Software::Proftpd => "ProFTPD",
            Software::PureFtpd => "Pure-FTPd",
            Software::FileZilla => "FileZilla Server",
            Software::Iis => "Microsoft FTP Service (IIS)",
            Software::Pyftpdlib => "pyftpdlib",
            Software::Rclone => "rclone serve ftp",
            Software::Sftpgo => "SFTPGo",
            Software::FtpSrv => "ftp-srv (Node.js)",
            Software::ServU => "Serv-U",
            Software::Titan => "Titan FTP Server",
            Software::CrushFtp => "CrushFTP",
            Software::Cerberus => "Cerberus FTP Server",
            Software::WingFtp => "Wing FTP Server",
            Software::Unftp => "unFTP",
            Software::Unknown => "unknown",
        }
    }

    /// How this server is told which address to announce in PASV replies.
    pub fn masquerade_setting(self) -> &'static str {
        match self {
            Software::Wharf => "`--passive-address ADDR` (or `[passive] address` in the config)",
            Software::Vsftpd => "`pasv_address=ADDR` in vsftpd.conf",
            Software::Proftpd => "`MasqueradeAddress ADDR` in proftpd.conf",
            Software::PureFtpd => "`-P ADDR` (ForcePassiveIP)",
            Software::FileZilla => {
                "Passive mode settings → \"Use the following IP\" (the public address)"
            }
            Software::Iis => "FTP Firewall Support → \"External IP Address of Firewall\"",
            Software::Pyftpdlib => "`handler.masquerade_address = ADDR`",
            Software::Rclone => "`--public-ip ADDR` of `rclone serve ftp`",
            Software::Sftpgo => "`force_passive_ip` of the FTP binding (ftpd.bindings)",
            Software::FtpSrv => "the `pasv_url` option of FtpSrv",
            Software::ServU => "the listener's \"PASV IP address\" (Domain → Listeners)",
            Software::Titan => "the server's PASV IP address (NAT settings)",
            Software::CrushFtp => "the server item's PASV IP (Preferences → IP/Port)",
            Software::Cerberus => "the interface's passive IP address",
            Software::WingFtp => "the domain's passive mode IP",
            Software::Unftp => "`--passive-host ADDR`",
            Software::Unknown => "the server's passive/masquerade address setting",
        }
    }

    /// Where TLS is turned on, in the server's own terms.
    pub fn tls_setting(self) -> &'static str {
        match self {
            Software::Wharf => "--tls-cert FILE --tls-key FILE (or [tls] cert/key in the config)",
            Software::Vsftpd => "ssl_enable=YES with rsa_cert_file and rsa_private_key_file",
            Software::Proftpd => "TLSEngine on (mod_tls) with TLSRSACertificateFile",
            Software::PureFtpd => "--tls=1 (or 2) and /etc/ssl/private/pure-ftpd.pem",
            Software::FileZilla => {
                "FTP over TLS settings: a certificate and \"Allow explicit FTP over TLS\""
            }
            Software::Iis => "FTP SSL Settings: choose a certificate",
            Software::Pyftpdlib => "TLS_FTPHandler with certfile",
            Software::Rclone => "`--cert FILE --key FILE` of `rclone serve ftp`",
            Software::Sftpgo => "`tls_mode` and certificate_file/certificate_key_file of ftpd",
            Software::FtpSrv => "the `tls` option of FtpSrv (key and cert)",
            Software::ServU => "a listener of type \"FTP and Explicit SSL/TLS\" with a certificate",
            Software::Titan => "FTPS (explicit) with a certificate",
            Software::CrushFtp => "an FTPES server item with a keystore",
            Software::Cerberus => "explicit TLS on the interface, with a certificate",
            Software::WingFtp => "FTP over TLS (explicit) for the domain, with a certificate",
            Software::Unftp => "`--ftps-certs-file FILE --ftps-key-file FILE`",
            Software::Unknown => "the server's TLS (FTPS) settings",
        }
    }

    /// How this server is made to accept TLS 1.2 (with ciphers current clients offer).
    pub fn tls12_setting(self) -> &'static str {
        match self {
            Software::Vsftpd => {
                "`ssl_ciphers=HIGH` and `ssl_tlsv1_2=YES` in vsftpd.conf (its default cipher, DES-CBC3-SHA, is one current clients refuse)"
            }
            Software::Proftpd => "`TLSProtocol TLSv1.2 TLSv1.3` and `TLSCipherSuite HIGH`",
            Software::PureFtpd => "`--tlsciphersuite=HIGH`",
            Software::FileZilla => "FTP over TLS settings → minimum allowed TLS version 1.2",
            _ => "the server's TLS protocol and cipher settings (TLS 1.2 with ECDHE and AES-GCM)",
        }
    }

    /// Where a user is allowed to upload, rename and delete, in the server's own terms.
    pub fn write_setting(self) -> &'static str {
        match self {
            Software::Wharf => {
                "`--write` for command-line users and anonymous, or the user's `permissions` in the config"
            }
            Software::Vsftpd => {
                "`write_enable=YES` in vsftpd.conf (anonymous: also `anon_upload_enable=YES`, `anon_other_write_enable=YES`), and a directory the user may write"
            }
            Software::Proftpd => {
                "a `<Limit WRITE>` that allows the user in the directory's `<Directory>` block, and a directory the user may write"
            }
            Software::PureFtpd => {
                "a home directory the user may write (anonymous: without `--anonymouscantupload`)"
            }
            Software::FileZilla => "the user's file permissions: Write, Delete, Append",
            Software::Pyftpdlib => "the user's `perm` string (`elradfmwMT` for everything)",
            Software::Rclone => "`rclone serve ftp` without `--read-only`",
            Software::Unftp => "a storage back end the server may write",
            _ => "the user's write, rename and delete permissions on its login directory",
        }
    }

    /// How this server is made to listen on IPv6 (`ipv6`) or IPv4 as well.
    pub fn listen_setting(self, ipv6: bool) -> &'static str {
        match (self, ipv6) {
            (Software::Wharf, true) => "`--listen [::]:21` beside the IPv4 listener",
            (Software::Wharf, false) => "`--listen 0.0.0.0:21` beside the IPv6 listener",
            (Software::Vsftpd, _) => "`listen_ipv6=YES` (and `listen=NO`): one socket for both",
            (Software::Proftpd, _) => "`UseIPv6 on` and no IPv4-only `DefaultAddress`",
            (Software::PureFtpd, _) => "no `-4`/`-6` option",
            _ => "the server's listen address settings",
        }
    }

    /// How this server is told that names are UTF-8.
    pub fn utf8_setting(self) -> &'static str {
        match self {
            Software::Vsftpd => "`utf8_filesystem=YES` in vsftpd.conf",
            Software::Proftpd => "`UseUTF8 on` (mod_lang) in proftpd.conf",
            Software::PureFtpd => "`--fscharset=UTF-8` (with `--clientcharset`)",
            Software::FileZilla => "names are UTF-8 always; check the client's charset setting",
            _ => "the server's file name encoding setting (UTF-8)",
        }
    }

    /// How this server's passive port range is set.
    pub fn passive_range_setting(self) -> &'static str {
        match self {
            Software::Wharf => "`--passive-ports A-B` (or `[passive] ports`)",
            Software::Vsftpd => "`pasv_min_port`/`pasv_max_port` in vsftpd.conf",
            Software::Proftpd => "`PassivePorts A B` in proftpd.conf",
            Software::PureFtpd => "`-p A:B`",
            Software::FileZilla => "Passive mode settings → \"Use custom port range\"",
            Software::Iis => "FTP Firewall Support → \"Data Channel Port Range\"",
            Software::Pyftpdlib => "`handler.passive_ports = range(A, B)`",
            Software::Rclone => "`--passive-port A-B` of `rclone serve ftp`",
            Software::Sftpgo => "`passive_port_range` of ftpd",
            Software::FtpSrv => "the `pasv_min`/`pasv_max` options of FtpSrv",
            Software::ServU => "the listener's PASV port range",
            Software::Titan => "the server's PASV port range",
            Software::CrushFtp => "the server item's PASV port range",
            Software::Cerberus => "the interface's passive port range",
            Software::WingFtp => "the domain's passive port range",
            Software::Unftp => "`--passive-ports A-B`",
            Software::Unknown => "the server's passive port range",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_names() {
        assert_eq!(Software::identify("(vsFTPd 3.0.3)", ""), Software::Vsftpd);
        assert_eq!(
            Software::identify("ProFTPD Server (Debian) [::ffff:1.2.3.4]", ""),
            Software::Proftpd
        );
        assert_eq!(
            Software::identify("Microsoft FTP Service", "215 Windows_NT"),
            Software::Iis
        );
        assert_eq!(
            Software::identify("FileZilla Server 1.8.0", ""),
            Software::FileZilla
        );
        assert_eq!(
            Software::identify("---------- Welcome to Pure-FTPd [privsep] ----------", ""),
            Software::PureFtpd
        );
        assert_eq!(
            Software::identify("pyftpdlib 2.0.1 ready.", ""),
            Software::Pyftpdlib
        );
        assert_eq!(
            Software::identify("Wharf FTP server ready.", ""),
            Software::Wharf
        );
        assert_eq!(
            Software::identify("hello", "215 UNIX Type: L8"),
            Software::Unknown
        );
        for (banner, sw) in [
            ("Welcome to Rclone v1.75.2 FTP Server", Software::Rclone),
            ("SFTPGo 2.6.4 ready", Software::Sftpgo),
            ("Serv-U FTP Server v15.4 ready...", Software::ServU),
            ("Titan FTP Server 2019 Ready.", Software::Titan),
            ("CrushFTP Server Ready!", Software::CrushFtp),
            ("Cerberus FTP Server - Home Edition", Software::Cerberus),
            ("Wing FTP Server ready...", Software::WingFtp),
            ("Welcome to unFTP", Software::Unftp),
            ("ftp-srv ready", Software::FtpSrv),
        ] {
            assert_eq!(Software::identify(banner, ""), sw, "{banner}");
        }
        assert_eq!(
            Software::identify("ProFTPD Server (wharf) [127.0.0.1]", ""),
            Software::Proftpd
        );
    }
}
