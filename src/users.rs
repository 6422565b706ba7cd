//! Who a child runs as (`user`, `group`): names or numeric ids resolved from
//! /etc/passwd and /etc/group into a uid, a gid and supplementary groups.
//!
//! Read directly rather than through NSS, so a static binary resolves them
//! too (users only in LDAP or similar are not found: give a numeric id).
//! Called by `child::spawn` on the supervisor thread; the parsing is pure
//! and unit-tested.

use std::path::PathBuf;

/// The identity a child gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub name: String,
    pub home: PathBuf,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolve `user` (and `group`) for a spawn. Errors say why, for a 400.
pub fn resolve(user: &str, group: Option<&str>) -> Result<Ids, String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let me = nix::unistd::geteuid().as_raw();
    let ids = resolve_in(&passwd, &groups, user, group)?;
    if me != 0 && (ids.uid != me || ids.gid != nix::unistd::getegid().as_raw()) {
        return Err(format!(
            "exeio runs as uid {me}, not as root: it cannot run a process as user {user:?}"
        ));
    }
    Ok(ids)
}

fn resolve_in(
    passwd: &str,
    group_file: &str,
    user: &str,
    group: Option<&str>,
) -> Result<Ids, String> {
    let users: Vec<PasswdEntry> = passwd.lines().filter_map(parse_passwd).collect();
    let groups: Vec<GroupEntry> = group_file.lines().filter_map(parse_group).collect();
    let entry = users.iter().find(|u| u.name == user).or_else(|| {
        let uid: u32 = user.parse().ok()?;
        users.iter().find(|u| u.uid == uid)
    });
    let (uid, mut gid, name, home) = match entry {
        Some(u) => (u.uid, u.gid, u.name.clone(), u.home.clone()),
        None => match user.parse::<u32>() {
            // A numeric uid with no entry: its own group, no home.
            Ok(uid) => (uid, uid, user.to_owned(), "/".to_owned()),
            Err(_) => return Err(format!("no such user: {user:?} (not in /etc/passwd)")),
        },
    };
    if let Some(g) = group {
        gid = match groups.iter().find(|e| e.name == g) {
            Some(e) => e.gid,
            None => g
                .parse()
                .map_err(|_| format!("no such group: {g:?} (not in /etc/group)"))?,
        };
    }
    let mut supplementary: Vec<u32> = groups
        .iter()
        .filter(|e| e.members.contains(&name))
        .map(|e| e.gid)
        .collect();
    supplementary.push(gid);
    supplementary.sort_unstable();
    supplementary.dedup();
    Ok(Ids {
        uid,
        gid,
        groups: supplementary,
        name,
        home: PathBuf::from(home),
    })
}

fn parse_passwd(line: &str) -> Option<PasswdEntry> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 || line.starts_with('#') {
        return None;
    }
    Some(PasswdEntry {
        name: f[0].to_owned(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].to_owned(),
    })
}

fn parse_group(line: &str) -> Option<GroupEntry> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 4 || line.starts_with('#') {
        return None;
    }
    Some(GroupEntry {
        name: f[0].to_owned(),
        gid: f[2].parse().ok()?,
        members: f[3]
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # a comment\n\
        www:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
        broken line\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nalice:x:1000:\n\
        adm:x:4:alice,bob\ndocker:x:999:alice\n";

    #[test]
    fn names_ids_and_groups() {
        let a = resolve_in(PASSWD, GROUP, "alice", None).unwrap();
        assert_eq!((a.uid, a.gid), (1000, 1000));
        assert_eq!(a.groups, [4, 999, 1000]);
        assert_eq!(a.home, PathBuf::from("/home/alice"));
        let by_uid = resolve_in(PASSWD, GROUP, "33", None).unwrap();
        assert_eq!((by_uid.name.as_str(), by_uid.gid), ("www", 33));
        let grouped = resolve_in(PASSWD, GROUP, "www", Some("adm")).unwrap();
        assert_eq!((grouped.uid, grouped.gid, grouped.groups), (33, 4, vec![4]));
        let numeric = resolve_in(PASSWD, GROUP, "4242", Some("4243")).unwrap();
        assert_eq!((numeric.uid, numeric.gid), (4242, 4243));
    }

    #[test]
    fn unknown_names_say_so() {
        let e = resolve_in(PASSWD, GROUP, "mallory", None).unwrap_err();
        assert!(e.contains("no such user"), "{e}");
        let e = resolve_in(PASSWD, GROUP, "alice", Some("wheel")).unwrap_err();
        assert!(e.contains("no such group"), "{e}");
    }
}
