"""Tests of the Ansible collection (ansible/) with real ansible-playbook runs."""
