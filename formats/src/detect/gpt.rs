//! MBR and protective-MBR (GPT) disks: raw disks with a partition table, recognised so that
//! the table can be checked (Glance's `mbr` check). Their virtual size is the byte count.

use super::{Ended, Finding, HEAD_LEN};
use crate::field::le32;
use crate::format::Format;

const SIGNATURE_AT: usize = 510;
const SIGNATURE: [u8; 2] = [0x55, 0xAA];
const PARTITION_TABLE: usize = 446;
const ENTRY_LEN: usize = 16;
const PROTECTIVE_GPT: u8 = 0xEE;
/// "Fixed disk" media descriptor of a FAT BIOS parameter block.
const FAT_FIXED_DISK: u8 = 0xF8;

pub(crate) fn inspect(end: &Ended<'_>) -> Option<Finding> {
    let head = end.head;
    if head.len() < HEAD_LEN || head.get(SIGNATURE_AT..HEAD_LEN) != Some(&SIGNATURE[..]) {
        return None;
    }
    // A FAT volume boot record carries the same signature; two FATs on a fixed disk give it away.
    if head.get(0x10) == Some(&2) && head.get(0x15) == Some(&FAT_FIXED_DISK) {
        return None;
    }
    let mut finding = Finding::new(Format::Gpt);
    finding.virtual_size = Some(end.total);
    if let Err(reason) = check_partitions(head) {
        finding.fail("mbr", reason);
    }
    Some(finding)
}

fn check_partitions(head: &[u8]) -> Result<(), String> {
    let mut used = Vec::new();
    let mut protective = false;
    for index in 0..4 {
        let start = PARTITION_TABLE + index * ENTRY_LEN;
        let entry =
            head.get(start..start + ENTRY_LEN).ok_or_else(|| format!("partition entry {index} is truncated"))?;
        let boot = entry.first().copied().unwrap_or(0);
        if boot != 0x00 && boot != 0x80 {
            return Err(format!("partition entry {index} has invalid boot flag {boot:#04x}"));
        }
        let kind = entry.get(4).copied().unwrap_or(0);
        if kind != 0 {
            used.push(index);
        }
        if kind == PROTECTIVE_GPT {
            protective = true;
            if entry.get(1..4) != Some(&[0x00, 0x02, 0x00][..]) {
                return Err(format!("protective GPT entry {index} has an invalid start CHS"));
            }
            let start_lba = le32(entry, 8).unwrap_or(0);
            if start_lba != 1 {
                return Err(format!("protective GPT entry {index} starts at LBA {start_lba}, not 1"));
            }
        }
    }
    if protective && used != [0] {
        return Err("a protective GPT entry must be the only partition, in entry 0".to_owned());
    }
    if used.is_empty() {
        return Err("the MBR defines no partitions".to_owned());
    }
    Ok(())
}
