# Stand-ins for the SEEK classes roles/seek/files/seek-settings.rb uses, so that
# test_seek_settings.py can run the script here with `ruby -r`. Written for these tests after
# seek4science/seek v1.18.1 (read there, see the script's header), nothing more:
# - User: login of 3 to 120 characters, unique; password of at least 10, equal to its confirmation;
#   stored hashed (app/models/user.rb); activate marks it active;
# - Person: email required and unique; the first Person saved becomes admin (first_person_admin);
#   is_admin= assigns the role at once (lib/seek/roles);
# - Seek::Config: getters and setters of the settings with SEEK's defaults
#   (config/initializers/seek_configuration.rb); set_smtp_settings stores a blank value as nil
#   (lib/seek/config.rb);
# - ActiveSupport's blank?/presence, ActiveRecord's transaction (rolled back on an exception),
#   disable_authorization_checks (lib/extensions/object.rb).
# State lives in a JSON file between runs (SETTINGS_STANDIN_DB); every setting written is listed in
# its "writes", so the tests see what a run changed.
require 'json'
require 'digest'

module Standin
  DB = ENV.fetch('SETTINGS_STANDIN_DB')

  def self.state
    @state ||= File.exist?(DB) ? JSON.parse(File.read(DB)) : { 'users' => [], 'people' => [], 'settings' => {}, 'writes' => [] }
  end

  at_exit { File.write(DB, JSON.generate(state)) }
end

class Object
  def blank?
    respond_to?(:empty?) ? empty? : !self
  end

  def presence
    blank? ? nil : self
  end
end

def disable_authorization_checks
  yield
end

module ActiveRecord
  class RecordInvalid < StandardError; end

  class Base
    def self.transaction
      snapshot = JSON.parse(JSON.generate(Standin.state))
      yield
    rescue Exception # rubocop:disable Lint/RescueException
      Standin.state.replace(snapshot)
      raise
    end
  end
end

class Person
  attr_accessor :first_name, :email, :id

  def self.rows
    Standin.state['people']
  end

  def self.admins
    rows.select { |row| row['admin'] }.map { |row| find(row['id']) }
  end

  def self.find(id)
    row = rows.find { |r| r['id'] == id }
    row && new(first_name: row['first_name'], email: row['email']).tap { |p| p.id = row['id'] }
  end

  def initialize(first_name: nil, email: nil)
    @first_name = first_name
    @email = email
  end

  def save!
    raise ActiveRecord::RecordInvalid, "Validation failed: Email can't be blank" if email.to_s.empty?
    raise ActiveRecord::RecordInvalid, 'Validation failed: Email is invalid' unless email.include?('@')
    raise ActiveRecord::RecordInvalid, 'Validation failed: Email has already been taken' if
      self.class.rows.any? { |r| r['email'].casecmp?(email) && r['id'] != id }

    if id.nil?
      @id = self.class.rows.size + 1
      self.class.rows << { 'id' => id, 'first_name' => first_name, 'email' => email, 'admin' => false }
      row['admin'] = true if self.class.rows.size == 1 # first_person_admin
    end
    true
  end

  def row
    self.class.rows.find { |r| r['id'] == id }
  end

  def is_admin?
    !!row&.fetch('admin')
  end

  def is_admin=(flag)
    row['admin'] = flag
  end
end

class User
  attr_accessor :login, :password, :password_confirmation, :email, :check_email_present
  attr_reader :person

  def self.rows
    Standin.state['users']
  end

  def self.where(login:)
    rows.select { |row| row['login'].casecmp?(login) }.map { |row| from_row(row) }
  end

  def self.from_row(row)
    new(login: row['login']).tap { |u| u.instance_variable_set(:@person, Person.find(row['person_id'])) }
  end

  def initialize(login: nil, password: nil, password_confirmation: nil)
    @login = login
    @password = password
    @password_confirmation = password_confirmation
  end

  def person=(person)
    @person = person
  end

  def save!
    unless (3..120).cover?(login.to_s.size)
      raise ActiveRecord::RecordInvalid, 'Validation failed: Login is the wrong length'
    end
    if password.to_s.size < 10
      raise ActiveRecord::RecordInvalid, 'Validation failed: Password is too short (minimum is 10 characters)'
    end
    raise ActiveRecord::RecordInvalid, "Validation failed: Password confirmation doesn't match" unless
      password == password_confirmation

    row = self.class.rows.find { |r| r['login'] == login }
    if row.nil?
      raise ActiveRecord::RecordInvalid, 'Validation failed: Login has already been taken' if
        self.class.rows.any? { |r| r['login'].casecmp?(login) }

      row = { 'login' => login, 'crypted_password' => Digest::SHA256.hexdigest("--salt--#{password}--"),
              'active' => false, 'person_id' => nil }
      self.class.rows << row
    end
    row['person_id'] = person&.id
    true
  end

  def activate
    self.class.rows.find { |r| r['login'] == login }['active'] = true
  end
end

module Seek
  class Config
    DEFAULTS = {
      'site_base_host' => 'http://localhost:3000', 'registration_disabled' => false, 'email_enabled' => false,
      'noreply_sender' => 'no-reply@sysmo-db.org',
      'smtp' => { 'address' => '', 'port' => '25', 'domain' => '', 'authentication' => '', 'user_name' => '',
                  'password' => '', 'enable_starttls_auto' => false }
    }.freeze

    %w[site_base_host registration_disabled email_enabled noreply_sender].each do |name|
      define_singleton_method(name) { Standin.state['settings'].fetch(name, DEFAULTS[name]) }
      define_singleton_method("#{name}=") do |value|
        Standin.state['settings'][name] = value
        Standin.state['writes'] << name
      end
    end

    def self.smtp_settings(field)
      (Standin.state['settings']['smtp'] || DEFAULTS['smtp'])[field.to_s]
    end

    def self.set_smtp_settings(field, value)
      smtp = (Standin.state['settings']['smtp'] ||= DEFAULTS['smtp'].dup)
      smtp[field.to_s] = value.blank? ? nil : value
      Standin.state['writes'] << "smtp.#{field}"
      value
    end
  end
end
